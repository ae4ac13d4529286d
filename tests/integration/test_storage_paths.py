"""Storage on both paths: the same assertions for plain PostgreSQL and for TimescaleDB.

The ``backend`` fixture runs each test once per path and skips the path the test server does
not have: plain on the embedded server, timescale when UNITY_TEST_DATABASE_URL points at a
server with the TimescaleDB extension.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import pytest

from tests.servers import TEMPLATE_DB, Env, TestServers
from unity.compose.cli import main
from unity.ingest import timescale
from unity.ingest.maintenance import ROLLUPS, Maintainer, maintain
from unity.schemas.storage import Retention, floor

Row = tuple[datetime, int, float]
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


_SORT_ITEM = re.compile(r'\s*("(?:[^"]|"")*"|[^\s,]+)\s*([^,]*)')


def sort_key(spelled: str | list[str] | None) -> list[tuple[str, str]]:
    """``"time" DESC, x`` (or its items as an array) as [("time", "DESC"), ("x", "")]:
    identifiers unquoted (or folded to lower case), options in upper case."""
    text = ", ".join(spelled) if isinstance(spelled, list) else spelled or ""
    out = []
    for m in _SORT_ITEM.finditer(text):
        name, rest = m[1], " ".join(m[2].split()).upper()
        name = name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
        out.append((name, rest))
    return out


def test_sort_keys_compare_names_not_their_spelling() -> None:
    assert sort_key('"time" DESC') == sort_key("time desc") == [("time", "DESC")]
    assert sort_key(["series_id", '"Odd ""x"""']) == [("series_id", ""), ('Odd "x"', "")]
    assert sort_key("time DESC NULLS FIRST, a") == [("time", "DESC NULLS FIRST"), ("a", "")]
    assert sort_key('"time" DESC') != sort_key("time")


async def test_the_test_template_refuses_connections_once_built(servers: TestServers) -> None:
    """No session can sit in the template, so no copy of it can fail as "in use"; on
    TimescaleDB a background scheduler used to (issue 22)."""
    ep = servers.endpoints
    base = ep.database_url.rpartition("/")[0]
    admin = await asyncpg.connect(f"{base}/postgres", password=ep.database_password)
    try:
        allowed = await admin.fetchval(
            "SELECT datallowconn FROM pg_database WHERE datname = $1", TEMPLATE_DB
        )
    finally:
        await admin.close()
    assert allowed is False
    with pytest.raises(asyncpg.PostgresError, match="not currently accepting connections"):
        await asyncpg.connect(f"{base}/{TEMPLATE_DB}", password=ep.database_password)


async def require_backend(env: Env, wanted: str) -> str:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        active = "timescale" if await timescale.installed(conn) else "plain"
    finally:
        await conn.close()
    if active != wanted:
        if wanted == "timescale":
            pytest.skip("UNITY_TEST_DATABASE_URL does not point at a server with TimescaleDB")
        pytest.skip("the test server has TimescaleDB; the plain path runs on the embedded one")
    return active


@pytest.fixture(params=["plain", "timescale"])
async def backend(request: pytest.FixtureRequest, env: Env) -> str:
    return await require_backend(env, request.param)


@pytest.fixture
async def db(env: Env) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        yield conn
    finally:
        await conn.close()


@dataclass(frozen=True)
class Dataset:
    rows: list[Row]
    gauges: list[int]
    counter: int
    start: datetime  # hour-aligned, every row is in [start, end)
    end: datetime


async def add_series(conn: asyncpg.Connection, names: list[tuple[str, str]]) -> list[int]:
    ids: list[int] = []
    for name, kind in names:
        ids.append(
            await conn.fetchval(
                "INSERT INTO series (host, plugin, name, kind) VALUES ('h', 'p', $1, $2) "
                "RETURNING id",
                name,
                kind,
            )
        )
    return ids


async def load(conn: asyncpg.Connection, rows: list[Row]) -> None:
    await conn.copy_records_to_table(
        "samples", records=rows, columns=("time", "series_id", "value")
    )


async def random_dataset(conn: asyncpg.Connection, seed: int = 7) -> Dataset:
    """Three hours of irregular samples ending an hour ago: gauges, a counter with a reset,
    and rows on and just before bucket edges."""
    rnd = random.Random(seed)
    gauges = await add_series(conn, [(f"g{i}", "gauge") for i in range(4)])
    (counter,) = await add_series(conn, [("c", "counter")])
    end = floor(datetime.now(UTC), HOUR) - HOUR
    start = end - 3 * HOUR
    rows: list[Row] = []
    for sid in gauges:
        t = start + timedelta(seconds=rnd.uniform(0, 5))
        while t < end:
            rows.append((t, sid, rnd.uniform(-50, 150)))
            t += timedelta(seconds=rnd.uniform(1, 25))
        for edge in (start + 61 * MINUTE, start + HOUR, start + 2 * HOUR):
            for at in (edge, edge - timedelta(microseconds=1)):
                if all(r[0] != at or r[1] != sid for r in rows):
                    rows.append((at, sid, rnd.uniform(-50, 150)))
    t, total = start, 1000.0
    reset_at = start + 100 * MINUTE + timedelta(seconds=13)
    while t < end:
        if reset_at <= t < reset_at + timedelta(seconds=10):
            total = 3.0  # the counter restarted
        rows.append((t, counter, total))
        total += rnd.uniform(0, 40)
        t += timedelta(seconds=10)
    await load(conn, rows)
    return Dataset(rows, gauges, counter, start, end)


def truth(rows: list[Row], width: timedelta) -> dict[tuple[int, datetime], dict[str, float]]:
    """min/max/avg/sum/count/last per series and bucket, computed in Python from raw rows."""
    groups: dict[tuple[int, datetime], list[tuple[datetime, float]]] = defaultdict(list)
    for t, sid, v in rows:
        groups[(sid, floor(t, width))].append((t, v))
    out: dict[tuple[int, datetime], dict[str, float]] = {}
    for key, points in groups.items():
        values = [v for _, v in points]
        out[key] = {
            "min": min(values),
            "max": max(values),
            "avg": math.fsum(values) / len(values),
            "sum": math.fsum(values),
            "count": float(len(values)),
            "last": max(points)[1],
        }
    return out


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


async def stored_in(conn: asyncpg.Connection, backend: str, rollup: str) -> str:
    """The relation holding a rollup's stored buckets: the table itself, or (TimescaleDB) the
    continuous aggregate's materialization hypertable, which real-time rows never reach."""
    return await timescale.materialization(conn, rollup) if backend == "timescale" else rollup


async def stored_rows(conn: asyncpg.Connection, relation: str) -> list[tuple[object, ...]]:
    """Every stored bucket with the transaction that wrote it: a rewrite changes xmin."""
    rows = await conn.fetch(
        f"SELECT xmin::text, bucket, series_id, min, max, avg, sum, count, last "  # noqa: S608
        f"FROM {relation} ORDER BY series_id, bucket"
    )
    return [tuple(r) for r in rows]


async def test_layout(backend: str, db: asyncpg.Connection, env: Env) -> None:
    """Plain: day partitions exist ahead after maintenance. Timescale: hypertables, chunks of
    one day, compression by series_id after 2 days, retention and refresh policies."""
    await maintain(db, env.settings)
    if backend == "plain":
        names = {
            r["relname"]
            for r in await db.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'samples'::regclass"
            )
        }
        today = floor(datetime.now(UTC), DAY)
        ahead = env.settings.partitions_ahead_days
        for i in range(ahead + 1):
            assert f"samples_p{today + i * DAY:%Y%m%d}" in names
        assert "samples_default" in names
        assert (
            await db.fetchval(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"
            )
            >= ahead + 2
        )
        return
    hypertables = await db.fetch(
        "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
    )
    enabled = {r["hypertable_name"]: r["compression_enabled"] for r in hypertables}
    assert enabled.get("samples") is True and "events" in enabled
    interval = await db.fetchval(
        "SELECT time_interval FROM timescaledb_information.dimensions "
        "WHERE hypertable_name = 'samples'"
    )
    assert interval == DAY
    compression = await db.fetchrow(
        "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings "
        "WHERE hypertable = 'samples'::regclass"
    )
    assert compression is not None
    # 2.28 quotes the identifier ("time" DESC), earlier releases did not: compare names.
    assert sort_key(compression["segmentby"]) == [("series_id", "")]
    assert sort_key(compression["orderby"]) == [("time", "DESC")]
    # Policies by relation; a continuous aggregate's job may name its materialization table.
    jobs = await db.fetch(
        """
        SELECT j.proc_name, coalesce(a.view_name, j.hypertable_name)::text AS relation,
               (j.config->>'drop_after')::interval AS drop_after,
               (j.config->>'compress_after')::interval AS compress_after,
               (j.config->>'start_offset')::interval AS start_offset,
               (j.config->>'end_offset')::interval AS end_offset
        FROM timescaledb_information.jobs j
        LEFT JOIN timescaledb_information.continuous_aggregates a
          ON a.materialization_hypertable_schema = j.hypertable_schema
         AND a.materialization_hypertable_name = j.hypertable_name
        WHERE j.hypertable_name IS NOT NULL
        """
    )
    by_proc: dict[str, dict[str, asyncpg.Record]] = defaultdict(dict)
    for job in jobs:
        by_proc[job["proc_name"]][job["relation"]] = job
    assert set(by_proc["policy_compression"]) == {"samples"}
    assert by_proc["policy_compression"]["samples"]["compress_after"] == 2 * DAY
    retention = Retention.from_settings(env.settings)
    assert {
        relation: job["drop_after"] for relation, job in by_proc["policy_retention"].items()
    } == retention.by_relation()
    caggs = await db.fetch(
        "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
    )
    assert {r["view_name"]: r["materialized_only"] for r in caggs} == {
        "samples_1m": False,
        "samples_5m": False,
        "samples_1h": False,
    }
    refreshes = by_proc["policy_refresh_continuous_aggregate"]
    assert set(refreshes) == {r.table for r in ROLLUPS}
    for rollup in ROLLUPS:
        job = refreshes[rollup.table]
        # Buckets close one width after they start; the window must never reach rows that
        # raw retention may already have dropped, or the policy would delete their buckets.
        assert job["end_offset"] == rollup.width
        assert job["end_offset"] < job["start_offset"] < retention.raw
    assert await timescale.unsafe_refresh_policies(db, retention.raw) == []


@pytest.mark.parametrize(
    ("table", "width"), [("samples_1m", MINUTE), ("samples_5m", 5 * MINUTE), ("samples_1h", HOUR)]
)
async def test_rollups_equal_raw_aggregates(
    backend: str, db: asyncpg.Connection, env: Env, table: str, width: timedelta
) -> None:
    data = await random_dataset(db)
    await maintain(db, env.settings)
    relation = await stored_in(db, backend, table)
    first = await stored_rows(db, relation)
    # Later, and on the plain path recomputing every bucket of the data set: still no change.
    lookback = msgspec.structs.replace(env.settings, rollup_lookback_s=5 * 3600.0)
    await maintain(db, lookback, now=datetime.now(UTC) + HOUR)
    assert first and await stored_rows(db, relation) == first
    rows = await db.fetch(
        f"SELECT bucket, series_id, min, max, avg, sum, count, last FROM {table} "  # noqa: S608
        "WHERE bucket >= $1 AND bucket < $2",
        data.start,
        data.end,
    )
    want = truth(data.rows, width)
    got = {(r["series_id"], r["bucket"]): r for r in rows}
    assert set(got) == set(want)
    for key, expected in want.items():
        for column, value in expected.items():
            assert close(got[key][column], value), (key, column, got[key][column], value)


async def test_rollups_are_incremental_and_take_late_rows(
    backend: str, db: asyncpg.Connection, env: Env
) -> None:
    data = await random_dataset(db, seed=11)
    await maintain(db, env.settings)
    late_at = datetime.now(UTC) - timedelta(seconds=env.settings.rollup_lookback_s / 2)
    late_at = floor(late_at, MINUTE) - MINUTE + timedelta(seconds=7)
    late = [(late_at, data.gauges[0], 12345.0)]
    await load(db, late)
    await maintain(db, env.settings, now=datetime.now(UTC) + MINUTE)
    row = await db.fetchrow(
        "SELECT max, count FROM samples_1m WHERE series_id = $1 AND bucket = $2",
        data.gauges[0],
        floor(late_at, MINUTE),
    )
    assert row is not None and row["max"] == 12345.0 and row["count"] == 1


async def test_retention_drops_old_data_per_resolution(
    backend: str, db: asyncpg.Connection, env: Env
) -> None:
    """Rows at these ages (days); each resolution keeps its own window."""
    (sid,) = await add_series(db, [("old", "gauge")])
    now = datetime.now(UTC)
    ages = (2, 20, 45, 150, 1000)
    await load(db, [(floor(now - age * DAY, HOUR) + 5 * MINUTE, sid, float(age)) for age in ages])
    await db.execute(
        "INSERT INTO plugin_runs (time, host, plugin, status) VALUES ($1, 'h', 'p', 'ok'), "
        "($2, 'h', 'p', 'ok')",
        now - 40 * DAY,
        now - DAY,
    )
    report = await maintain(db, env.settings)
    # The raw days 45, 150 and 1000 (partitions or chunks); no rollup ever stored buckets
    # older than its own window.
    assert len(report.partitions_dropped) == 3, report.partitions_dropped
    # A later run must keep the rollups of raw days already dropped: a refresh reaching back
    # over them (TimescaleDB logs the drop as an invalidation) would delete those buckets.
    await maintain(db, env.settings, now=now + DAY)

    async def ages_in(table: str, column: str) -> set[int]:
        rows = await db.fetch(
            f"SELECT DISTINCT {column} AS t FROM {table} WHERE series_id = $1",  # noqa: S608
            sid,
        )
        return {round((now - r["t"]) / DAY) for r in rows}

    assert await ages_in("samples", "time") == {2, 20}
    assert await ages_in("samples_1m", "bucket") == {2, 20, 45}
    assert await ages_in("samples_5m", "bucket") == {2, 20, 45}
    assert await ages_in("samples_1h", "bucket") == {2, 20, 45, 150}
    assert await db.fetchval("SELECT count(*) FROM plugin_runs") == 1


async def test_rows_without_partition_are_kept_and_moved(
    backend: str, db: asyncpg.Connection, env: Env
) -> None:
    """A COPY for a day far ahead (no partition yet) is stored, then moved into its own."""
    (sid,) = await add_series(db, [("future", "gauge")])
    when = floor(datetime.now(UTC), DAY) + 20 * DAY + HOUR
    rows = [(when + timedelta(seconds=i), sid, float(i)) for i in range(50)]
    await load(db, rows)
    await load(db, [(when - 10 * DAY, sid, -1.0)])
    if backend == "plain":
        assert await db.fetchval("SELECT count(*) FROM samples_default") == 51
    report = await maintain(db, env.settings)
    assert await db.fetchval("SELECT count(*) FROM samples WHERE series_id = $1", sid) == 51
    if backend == "plain":
        assert report.rows_moved >= 51
        assert await db.fetchval("SELECT count(*) FROM samples_default") == 0
        assert f"samples_p{floor(when, DAY):%Y%m%d}" in report.partitions_created
    # Redelivered rows still go through ON CONFLICT DO NOTHING on the partitioned table.
    await db.execute(
        "INSERT INTO samples (time, series_id, value) SELECT * FROM unnest($1::timestamptz[], "
        "$2::bigint[], $3::float8[]) ON CONFLICT (series_id, time) DO NOTHING",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )
    assert await db.fetchval("SELECT count(*) FROM samples WHERE series_id = $1", sid) == 51


async def test_maintainer_service_loops_until_stopped(
    backend: str, db: asyncpg.Connection, env: Env
) -> None:
    (sid,) = await add_series(db, [("looped", "gauge")])
    await load(db, [(floor(datetime.now(UTC), HOUR) - 2 * HOUR, sid, 1.5)])
    maintainer = Maintainer(env.settings, env.ep)
    await maintainer.start()
    task = asyncio.create_task(maintainer.run())
    try:
        for _ in range(400):  # bounded: 20 s
            if maintainer.runs:
                break
            await asyncio.sleep(0.05)
    finally:
        maintainer.stop()
        await asyncio.wait_for(task, 20)
        await maintainer.close()
    assert maintainer.failures == 0
    for rollup in ROLLUPS:
        relation = await stored_in(db, backend, rollup.table)
        stored = await db.fetch(f"SELECT series_id, last FROM {relation}")  # noqa: S608
        assert [tuple(r) for r in stored] == [(sid, 1.5)], rollup.table


async def test_timescale_policies_follow_settings_and_refresh_stays_outside_transactions(
    db: asyncpg.Connection, env: Env
) -> None:
    await require_backend(env, "timescale")

    async def retention_jobs() -> set[int]:
        rows = await db.fetch(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
        )
        return {r["job_id"] for r in rows}

    before = await retention_jobs()
    keep = Retention.from_settings(env.settings).by_relation()
    await timescale.apply_retention(db, keep)
    assert len(before) == len(keep)
    assert await retention_jobs() == before  # already as configured: the same jobs
    changed = {**keep, "samples_1m": 120 * DAY}
    await timescale.apply_retention(db, changed)
    assert await timescale.retention_policies(db) == changed
    now = datetime.now(UTC)
    async with db.transaction():
        with pytest.raises(RuntimeError, match="transaction"):
            await timescale.refresh(db, "samples_1m", now - HOUR, now)
    assert await timescale.refresh(db, "samples_1m", now - HOUR, now)
    assert not await timescale.refresh(db, "samples_1h", now - MINUTE, now)  # no whole bucket


def test_unity_maintain_once(
    env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in {
        "UNITY_DATA_DIR": str(tmp_path),
        "UNITY_DATABASE_URL": env.ep.database_url,
        "UNITY_DATABASE_PASSWORD": env.ep.database_password or "",
        "UNITY_NATS_URL": env.ep.nats_url,
        "UNITY_VALKEY_URL": env.ep.valkey_url,
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["maintain", "--once"]) == 0
    out = capsys.readouterr().out
    assert "created" in out and "skipped" not in out
