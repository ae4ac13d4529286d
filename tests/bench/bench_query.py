"""History queries on a week of data: the rollup path against raw rows, measured in one run.

    .venv/bin/python -m tests.bench.bench_query [--series 100] [--days 7] [--interval 10]

Starts its own embedded PostgreSQL (or uses UNITY_TEST_DATABASE_URL and
UNITY_TEST_DATABASE_PASSWORD, TimescaleDB or not; the database is created and dropped), loads
series x days at ``interval`` seconds with binary COPY, runs maintenance (partitions and
rollups, or the refresh of the continuous aggregates), then prints p50/p95 of: the 7-day query
at a 5-minute step (answered from the 5m tier), the same query forced onto the 1m rollup and
onto raw rows (the baselines), and a 1-hour raw query at the sample interval. With
``--covering`` it then adds a covering index on ``samples_1m`` and times a day of 10 series at
1 minute before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from unity.api.query import POOL_SETTINGS, Resolution, plan
from unity.api.query import prepare as prepare_query
from unity.api.query import query as run_query
from unity.compose import migrate
from unity.compose.embedded import PostgresServer, free_port
from unity.ingest import timescale
from unity.ingest.maintenance import PARTITIONED, Report, ensure_partitions, maintain
from unity.schemas.storage import floor
from unity.sdk.connection import pg_pool
from unity.sdk.settings import Endpoints, load_settings

HOUR = timedelta(hours=1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(label: str, runs: int, make: Callable[[], Awaitable[int]]) -> None:
    await make()  # warm-up: plans and caches, not measured
    took: list[float] = []
    points = 0
    for _ in range(runs):
        started = time.perf_counter()
        points = await make()
        took.append(time.perf_counter() - started)
    print(
        f"{label:<44} runs={runs:<3} points={points:<7} "
        f"p50={statistics.median(took) * 1000:8.1f} ms  "
        f"p95={percentile(took, 0.95) * 1000:8.1f} ms",
        flush=True,
    )


def batches(
    ids: list[int], start: datetime, end: datetime, interval: int
) -> Iterator[list[tuple[datetime, int, float]]]:
    step = timedelta(seconds=interval)
    t = start
    while t < end:
        hour_end = min(t + HOUR, end)
        rows: list[tuple[datetime, int, float]] = []
        while t < hour_end:
            minute = t.minute
            rows.extend((t, sid, float(sid * 10 + minute)) for sid in ids)
            t += step
        yield rows


async def _covering(pool: asyncpg.Pool, ids: list[int], end: datetime, runs: int) -> None:
    """A day of 10 series at 1 minute (rows as points from samples_1m), without and with an
    index that holds every column the query reads (an index-only scan after VACUUM)."""

    async def day() -> int:
        result = await run_query(pool, ids, end - timedelta(days=1), end, 60, "avg")
        assert result.resolution == "1m"
        return sum(len(s.points) for s in result.series)

    await timed("1 d x 10 series, 1 min step (1m, primary key)", runs, day)
    await pool.execute(
        "CREATE INDEX samples_1m_covering ON samples_1m (series_id, bucket) "
        "INCLUDE (min, max, sum, count, last)"
    )
    await pool.execute("VACUUM ANALYZE samples_1m")
    await timed("1 d x 10 series, 1 min step (1m, covering)", runs, day)


async def bench(
    ep: Endpoints, series: int, days: int, interval: int, runs: int, covering: bool
) -> None:
    await migrate.upgrade(ep)
    conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
    try:
        ids = [
            await conn.fetchval(
                "INSERT INTO series (host, plugin, name) VALUES ('bench', 'bench', $1) "
                "RETURNING id",
                f"s{i}",
            )
            for i in range(series)
        ]
        end = floor(datetime.now(UTC), HOUR)
        start = end - timedelta(days=days)
        settings = load_settings(env={})
        backend = "timescale" if await timescale.installed(conn) else "plain"
        print(f"storage path: {backend}")
        if backend == "plain":
            # Partitions for the whole week first, as a running maintainer would have made them
            # (hypertables make their chunks as rows arrive).
            await ensure_partitions(conn, PARTITIONED[0], start, end + HOUR, Report())
        started = time.perf_counter()
        total = 0
        for rows in batches(ids, start, end, interval):
            await conn.copy_records_to_table(
                "samples", records=rows, columns=("time", "series_id", "value")
            )
            total += len(rows)
        took = time.perf_counter() - started
        print(f"loaded {total} rows by COPY in {took:.1f} s ({total / took / 1000:.0f} k rows/s)")
        started = time.perf_counter()
        await maintain(conn, settings)
        print(
            f"maintenance, first run (rolls up all {days} d): {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        await maintain(conn, settings, now=datetime.now(UTC) + 2 * timedelta(minutes=1))
        print(f"maintenance, next run (incremental): {time.perf_counter() - started:.2f} s")
        # As autovacuum leaves a week-old database: statistics, and pages marked all-visible
        # (what lets the rollup key answer by an index-only scan).
        await conn.execute("VACUUM ANALYZE")
        # Connections set up as the API's are.
        pool = await pg_pool(ep, min_size=1, max_size=2, server_settings=POOL_SETTINGS)
        try:

            def week(resolution: Resolution | None) -> Callable[[], Awaitable[int]]:
                async def once() -> int:
                    result = await run_query(
                        pool,
                        ids,
                        start,
                        end,
                        300,
                        "avg",
                        max_points=series * days * 288,
                        resolution=resolution or "auto",
                    )
                    return sum(len(s.points) for s in result.series)

                return once

            week_plan = plan(start, end, 300, series, max_points=series * days * 288)
            week_stmt = await prepare_query(pool, ids, week_plan, "avg")

            async def week_sql_only() -> int:
                return len(await pool.fetch(week_stmt.sql, *week_stmt.args))

            async def last_hour() -> int:
                result = await run_query(pool, ids, end - HOUR, end, interval, "avg")
                assert result.resolution == "raw"
                return sum(len(s.points) for s in result.series)

            await timed(
                f"{days} d x {series} series, 5 min step (auto: {week_plan.resolution})",
                runs,
                week(None),
            )
            await timed("  the same, SQL fetch only", runs, week_sql_only)
            await timed(f"{days} d x {series} series, 5 min step (1m)", runs, week("1m"))
            await timed(
                f"{days} d x {series} series, 5 min step (raw)", max(3, runs // 5), week("raw")
            )
            await timed(f"1 h x {series} series, {interval} s step (raw)", runs, last_hour)
            if covering:
                await _covering(pool, ids[:10], end, runs)
        finally:
            await pool.close()
    finally:
        await conn.close()


async def _admin(ep: Endpoints, sql: str) -> None:
    base, _, _ = ep.database_url.rpartition("/")
    conn = await asyncpg.connect(f"{base}/postgres", password=ep.database_password)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--interval", type=int, default=10, help="seconds between samples")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--covering", action="store_true", help="measure a covering index")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    data = Path(tempfile.mkdtemp(prefix="unity-bench-"))
    data.chmod(0o711)  # PostgreSQL runs as an unprivileged account when run as root
    server: PostgresServer | None = None
    try:
        if os.environ.get("UNITY_TEST_DATABASE_URL"):
            url = os.environ["UNITY_TEST_DATABASE_URL"]
            password = os.environ.get("UNITY_TEST_DATABASE_PASSWORD")
        else:
            server = PostgresServer(data, free_port(), uuid.uuid4().hex, "nobody")
            server.start()
            url = f"postgresql://unity@127.0.0.1:{server.port}/unity"
            password = server.password
        name = f"bench{uuid.uuid4().hex[:8]}"
        admin = Endpoints("", None, None, url, password, "", None)
        asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
        base, _, _ = url.rpartition("/")
        ep = replace(admin, database_url=f"{base}/{name}")
        try:
            asyncio.run(bench(ep, args.series, args.days, args.interval, args.runs, args.covering))
        finally:
            asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(data, ignore_errors=True)
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
