"""The series catalogue when two workers create the same new series at the same moment."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.helpers import count
from tests.servers import Env
from unity.ingest.catalogue import Catalogue, SeriesKey, SeriesSpec, canonical_labels

SERIES = 2000


def _specs() -> list[SeriesSpec]:
    return [
        SeriesSpec(
            SeriesKey("h1", "disk", "", "disk_used_bytes", canonical_labels({"dev": f"d{i}"})),
            "bytes",
            "gauge",
        )
        for i in range(SERIES)
    ]


async def test_two_workers_resolving_the_same_new_series_get_the_same_ids(env: Env) -> None:
    specs = _specs()
    conns = [
        await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
        for _ in range(2)
    ]
    both_begun = asyncio.Barrier(2)

    async def resolve(conn: asyncpg.Connection, order: list[SeriesSpec]) -> dict[SeriesKey, int]:
        async with conn.transaction():
            await conn.execute("SELECT txid_current()")  # the transaction has really begun
            await both_begun.wait()
            return await Catalogue().resolve(conn, order)

    try:
        # Opposite orders: had each worker inserted in its own order, the two would wait for
        # each other's rows (a deadlock PostgreSQL breaks by failing one of them).
        first, second = await asyncio.wait_for(
            asyncio.gather(resolve(conns[0], specs), resolve(conns[1], specs[::-1])), 60
        )
    finally:
        for conn in conns:
            await conn.close()
    assert first == second
    assert set(first) == {spec.key for spec in specs}
    assert len(set(first.values())) == SERIES
    assert await count(env, "SELECT count(*) FROM series") == SERIES
    in_db = await count(
        env,
        "SELECT count(DISTINCT (host, plugin, instance, name, labels)) FROM series"
        " WHERE host = 'h1' AND plugin = 'disk'",
    )
    assert in_db == SERIES
