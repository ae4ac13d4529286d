"""The query layer answers the same from raw rows and every rollup tier, on both paths."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.integration.test_storage_paths import (
    DAY,
    HOUR,
    MINUTE,
    Row,
    add_series,
    close,
    load,
    random_dataset,
    require_backend,
    truth,
)
from tests.servers import Env
from unity.api.query import AGGREGATIONS, Aggregation, QueryError, Resolution, TooManyPoints, plan
from unity.api.query import prepare as prepare_query
from unity.api.query import query as run_query
from unity.ingest.maintenance import maintain
from unity.schemas.storage import Retention, floor


@pytest.fixture(params=["plain", "timescale"])
async def backend(request: pytest.FixtureRequest, env: Env) -> str:
    return await require_backend(env, request.param)


@pytest.fixture
async def conn(env: Env) -> Any:
    c = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        yield c
    finally:
        await c.close()


def rate_truth(
    rows: list[Row], sid: int, step: timedelta, start: datetime
) -> list[tuple[float, float]]:
    """Per step: increase of the last value since the previous step, resets from zero."""
    last = {b: v["last"] for (s, b), v in truth(rows, step).items() if s == sid}
    out: list[tuple[float, float]] = []
    previous: tuple[datetime, float] | None = None
    for bucket in sorted(last):
        value = last[bucket]
        if previous is not None and bucket >= start:
            increase = value - previous[1] if value >= previous[1] else value
            out.append((bucket.timestamp(), increase / (bucket - previous[0]).total_seconds()))
        previous = (bucket, value)
    return out


def points_close(got: list[tuple[float, float]], want: list[tuple[float, float]]) -> bool:
    return len(got) == len(want) and all(
        g[0] == w[0] and close(g[1], w[1]) for g, w in zip(got, want, strict=True)
    )


@pytest.mark.parametrize(
    ("resolution", "step"),
    [
        ("raw", 60),
        ("1m", 60),
        ("raw", 300),
        ("1m", 300),
        ("raw", 3600),
        ("1m", 3600),
        ("5m", 300),
        ("5m", 900),
        ("1h", 3600),
        ("1h", 7200),
    ],
)
async def test_every_resolution_matches_raw_truth(
    backend: str, conn: asyncpg.Connection, env: Env, resolution: Resolution, step: int
) -> None:
    data = await random_dataset(conn)
    await maintain(conn, env.settings)
    ids = [*data.gauges, data.counter]
    width = timedelta(seconds=step)
    for aggregation in AGGREGATIONS:
        result = await run_query(
            conn, ids, data.start, data.end, step, aggregation, resolution=resolution
        )
        assert result.resolution == resolution and result.step == step
        want: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for (sid, bucket), values in sorted(truth(data.rows, width).items()):
            want[sid].append((bucket.timestamp(), values[aggregation]))
        got = {s.id: s.points for s in result.series}
        assert set(got) == set(ids)
        for sid in ids:
            assert points_close(got[sid], want[sid]), (aggregation, sid)
    rates = await run_query(conn, ids, data.start, data.end, step, rate=True, resolution=resolution)
    by_id = {s.id: s for s in rates.series}
    assert by_id[data.counter].rate and not by_id[data.gauges[0]].rate
    want_rate = rate_truth(data.rows, data.counter, width, data.start)
    assert points_close(by_id[data.counter].points, want_rate)
    assert all(v >= 0 for _, v in by_id[data.counter].points)  # the reset is not a negative rate


# Exact whatever the order of summation: each is one of the raw values or a whole count.
EXACT: tuple[Aggregation, ...] = ("min", "max", "last", "count")


@pytest.mark.parametrize(("resolution", "width"), [("1m", 60), ("5m", 300), ("1h", 3600)])
async def test_a_step_of_the_rollup_width_reads_its_rows_as_points(
    backend: str, conn: asyncpg.Connection, env: Env, resolution: Resolution, width: int
) -> None:
    """The rows-as-points statement answers as the raw rows binned at the same step do."""
    data = await random_dataset(conn)
    await maintain(conn, env.settings)
    ids = [*data.gauges, data.counter]
    own = await prepare_query(conn, ids, plan(data.start, data.end, width, len(ids)), "avg")
    wider = await prepare_query(conn, ids, plan(data.start, data.end, 2 * width, len(ids)))
    assert own.plan.resolution == wider.plan.resolution == resolution
    # The rows are read as they are: no binning of rollup rows into steps.
    assert "date_bin" not in own.sql and "date_bin" in wider.sql
    for aggregation in AGGREGATIONS:
        rows = await run_query(conn, ids, data.start, data.end, width, aggregation)
        raw = await run_query(conn, ids, data.start, data.end, width, aggregation, resolution="raw")
        assert rows.resolution == resolution
        got = {s.id: s.points for s in rows.series}
        want = {s.id: s.points for s in raw.series}
        assert set(got) == set(want) == set(ids)
        for sid in ids:
            if aggregation in EXACT:
                assert got[sid] == want[sid], (aggregation, sid)
            else:
                assert points_close(got[sid], want[sid]), (aggregation, sid)
    rates = await run_query(conn, ids, data.start, data.end, width, rate=True)
    raw_rates = await run_query(conn, ids, data.start, data.end, width, rate=True, resolution="raw")
    assert rates.resolution == resolution
    by_id = {s.id: s for s in rates.series}
    assert [(s.id, s.rate) for s in rates.series] == [(s.id, s.rate) for s in raw_rates.series]
    assert by_id[data.counter].rate and by_id[data.counter].points
    raw_by_id = {s.id: s for s in raw_rates.series}
    # The counter's rate comes from last values (exact); the gauges keep their average.
    assert by_id[data.counter].points == raw_by_id[data.counter].points
    for sid in data.gauges:
        assert points_close(by_id[sid].points, raw_by_id[sid].points), sid


async def test_recent_range_past_the_rollup_is_complete(
    backend: str, conn: asyncpg.Connection, env: Env
) -> None:
    """Rows newer than the last rollup run are still answered at 1m (real-time aggregation)."""
    data = await random_dataset(conn)
    now = datetime.now(UTC)
    await maintain(conn, env.settings, now=now - 5 * MINUTE)
    fresh = [(now - timedelta(seconds=s), data.gauges[0], float(s)) for s in range(1, 240, 10)]
    await load(conn, fresh)
    result = await run_query(
        conn, [data.gauges[0]], now - 10 * MINUTE, now, 60, "count", resolution="1m"
    )
    (series,) = result.series
    assert sum(v for _, v in series.points) == len(fresh)


def _rows_read(plan_node: dict[str, Any]) -> dict[str, int]:
    """Rows each relation's leaf scans returned in an EXPLAIN (ANALYZE, FORMAT JSON) plan."""
    found: dict[str, int] = {}
    for relation, node in _leaves(plan_node):
        rows = int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
        found[relation] = found.get(relation, 0) + rows
    return found


def _leaves(plan_node: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    appends = {"ChunkAppend", "ConstraintAwareAppend"}
    found: list[tuple[str, dict[str, Any]]] = []
    if "Relation Name" in plan_node and plan_node.get("Custom Plan Provider") not in appends:
        found.append((plan_node["Relation Name"], plan_node))
    for child in plan_node.get("Plans", []):
        found.extend(_leaves(child))
    return found


async def _family(conn: asyncpg.Connection, relation: str) -> set[str]:
    """A relation with every partition or chunk below it."""
    rows = await conn.fetch(
        """
        WITH RECURSIVE tree(oid) AS (
            SELECT $1::text::regclass::oid
            UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid
        )
        SELECT relname FROM pg_class WHERE oid IN (SELECT oid FROM tree)
        """,
        relation,
    )
    return {r["relname"] for r in rows}


async def test_week_of_100_series_at_5_minutes_reads_the_5m_tier(
    backend: str, conn: asyncpg.Connection, env: Env
) -> None:
    ids = await add_series(conn, [(f"s{i}", "gauge") for i in range(100)])
    end = floor(datetime.now(UTC), HOUR) - HOUR
    start = end - 7 * DAY
    rows: list[Row] = []
    t = start
    while t < end:
        rows.extend((t, sid, float(sid) + t.minute) for sid in ids)
        t += 10 * MINUTE
    await load(conn, rows)
    await maintain(conn, env.settings)
    stmt = await prepare_query(conn, ids, plan(start, end, 300, len(ids), 250_000), "avg")
    assert stmt.plan.resolution == "5m"
    # Each point is one stored row: nothing is aggregated again at query time.
    assert "date_bin" not in stmt.sql
    explained = json.loads(
        await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {stmt.sql}", *stmt.args)
    )
    scanned = _rows_read(explained[0]["Plan"])
    raw = await _family(conn, "samples")
    if backend == "timescale":
        materialized = await conn.fetchval(
            "SELECT format('%I.%I', materialization_hypertable_schema, "
            "materialization_hypertable_name) FROM timescaledb_information.continuous_aggregates "
            "WHERE view_name = 'samples_5m'"
        )
        rollup = await _family(conn, materialized)
        watermark = await conn.fetchval(
            "SELECT _timescaledb_functions.to_timestamp("
            "_timescaledb_functions.cagg_watermark(mat_hypertable_id))"
            " FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = 'samples_5m'"
        )
    else:
        rollup = await _family(conn, "samples_5m")
        watermark = await conn.fetchval(
            "SELECT done_until FROM rollup_watermarks WHERE resolution = 'samples_5m'"
        )
    # The live tail (docs/architecture.md): the rollup answers up to its watermark, raw rows
    # only after it. After a maintenance run every stored row is below the watermark, so the
    # raw table, when the plan reads it at all, gives no row.
    assert set(scanned) and set(scanned) <= rollup | raw, scanned
    assert watermark > max(t for t, _, _ in rows)
    assert sum(n for relation, n in scanned.items() if relation in raw) == 0, scanned
    result = await run_query(conn, ids, start, end, 300, "avg", max_points=250_000)
    assert len(result.series) == 100
    assert sum(len(s.points) for s in result.series) == len(rows)


def test_plan_picks_resolution_from_step_and_range() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    hour_ago = now - HOUR
    assert plan(hour_ago, now, 10, 1, now=now).resolution == "raw"
    assert plan(hour_ago, now, 90, 1, now=now).resolution == "raw"
    assert plan(hour_ago, now, 60, 1, now=now).resolution == "1m"
    # The coarsest tier whose width divides the step.
    assert plan(now - 7 * DAY, now, 300, 100, now=now).resolution == "5m"
    assert plan(now - 7 * DAY, now, 900, 100, now=now).resolution == "5m"
    assert plan(now - DAY, now, 120, 100, now=now).resolution == "1m"
    assert plan(now - 30 * DAY, now, 7200, 100, now=now).resolution == "1h"
    # Raw rows are gone after 30 days: a 10 s step there becomes a 1 minute step on the rollup.
    old = plan(now - 40 * DAY, now - 39 * DAY, 10, 1, now=now, retention=Retention())
    assert (old.resolution, old.step) == ("1m", 60)
    # Past the 1m window the 5m tier serves (a 1 minute step grows to 5), past its own the 1h.
    older = plan(now - 200 * DAY, now - 199 * DAY, 60, 1, now=now)
    assert (older.resolution, older.step) == ("5m", 300)
    assert plan(now - 400 * DAY, now - 399 * DAY, 60, 1, now=now).resolution == "1h"
    # A tier kept shorter than a finer one is skipped where it no longer holds the start.
    short = Retention(m5=timedelta(days=10))
    assert plan(now - 20 * DAY, now, 300, 1, now=now, retention=short).resolution == "1m"
    # No step: the finest one that keeps within the cap.
    auto = plan(now - DAY, now, None, 10, max_points=10_000, now=now)
    assert auto.step == 120 and auto.resolution == "1m"
    with pytest.raises(TooManyPoints):
        plan(now - 7 * DAY, now, 10, 100, max_points=100_000, now=now)
    with pytest.raises(QueryError):
        plan(now, hour_ago, 60, 1, now=now)
    with pytest.raises(QueryError):
        plan(hour_ago, now, 90, 1, resolution="1m", now=now)
    # The range is widened to whole steps so that every resolution sees whole buckets.
    odd = plan(hour_ago + timedelta(seconds=7), now - timedelta(seconds=3), 300, 1, now=now)
    assert (odd.start, odd.end) == (hour_ago, now)


async def test_unknown_aggregation_is_refused(conn: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    bad: Any = "median"
    aggregation: Aggregation = bad
    with pytest.raises(QueryError, match="median"):
        await run_query(conn, [1], now - HOUR, now, 60, aggregation)
