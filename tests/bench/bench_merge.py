"""The writer's merge path (redelivery, replay): what finding conflicts costs.

    .venv/bin/python -m tests.bench.bench_merge [--rows 50000] [--rounds 5]

Starts its own servers (as the tests do; or the UNITY_TEST_* URLs), stores one batch of
``--rows`` samples (1 000 series), then writes the same batch again, as a redelivery does, in
alternating rounds: (a) the former merge, ``INSERT ... ON CONFLICT DO NOTHING`` from the
staging table, as a same-run baseline; (b) today's ``write_samples`` merge, which also keeps
the first of a batch's duplicates and looks up every row that met another stored value. Both
roll back, so each round meets the same stored rows. Prints the median time of each and (b)/(a).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from tests.servers import TestServers, drop_database, fresh_database
from tests.servers import start_servers as session_servers
from unity.ingest.copyformat import copy_packed, pack_row
from unity.ingest.writer import COLUMNS, write_samples

SERIES = 1000


async def _former_merge(conn: asyncpg.Connection, data: bytes) -> None:
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS former_stage "
        "(time timestamptz, series_id bigint, value double precision) ON COMMIT DELETE ROWS"
    )
    source = memoryview(data)
    await conn.copy_to_table("former_stage", source=source, columns=COLUMNS, format="binary")
    await conn.execute(
        "INSERT INTO samples (time, series_id, value) SELECT time, series_id, value "
        "FROM former_stage ON CONFLICT (series_id, time) DO NOTHING"
    )


async def run(servers: TestServers, rows: int, rounds: int) -> None:
    name = f"bench{uuid.uuid4().hex[:8]}"
    ep = await fresh_database(servers, name)
    conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
    try:
        ids = [
            r["id"]
            for r in await conn.fetch(
                "INSERT INTO series (host, plugin, name, labels) SELECT 'h', 'bench', 'm',"
                " jsonb_build_object('n', i::text) FROM generate_series(1, $1) i RETURNING id",
                SERIES,
            )
        ]
        start = int(datetime.now(UTC).timestamp()) - 3600
        packed = [
            pack_row((start + i // SERIES) * 1_000_000, ids[i % SERIES], float(i))
            for i in range(rows)
        ]
        data = copy_packed(packed)
        await conn.copy_to_table(
            "samples", source=memoryview(data), columns=COLUMNS, format="binary"
        )
        await conn.execute("ANALYZE samples")
        former: list[float] = []
        today: list[float] = []
        for _ in range(rounds):
            for out, write in ((former, _former_merge), (today, None)):
                tx = conn.transaction()
                await tx.start()
                started = time.perf_counter()
                if write is None:
                    path, conflicts = await write_samples(conn, packed)
                    assert path == "merge" and conflicts == [], (path, len(conflicts))
                else:
                    await write(conn, data)
                out.append(time.perf_counter() - started)
                await tx.rollback()
        a, b = statistics.median(former), statistics.median(today)
        print(
            f"redelivered batch of {rows:,} rows ({SERIES} series), {rounds} rounds:\n"
            f"(a) former merge: median {a * 1000:.0f} ms\n"
            f"(b) merge with conflict detection: median {b * 1000:.0f} ms\n"
            f"(b)/(a) = {b / a:.2f}",
            flush=True,
        )
    finally:
        await conn.close()
        await drop_database(servers, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with contextlib.contextmanager(session_servers)() as servers:
        asyncio.run(run(servers, args.rows, args.rounds))


if __name__ == "__main__":
    main()
