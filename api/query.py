"""History queries: pick raw samples or a rollup tier, and answer the same way from each.

The answer for a step is computed from whatever resolution serves it, and every resolution
gives the same numbers: the range is widened to whole steps, steps are whole multiples of the
rollup they read, and rollups keep min, max, sum, count and last per bucket, which compose
exactly. Points are ``(bucket start in epoch seconds, value)``; empty buckets are left out.
The planner reads the coarsest tier whose width divides the step (a week at 5-minute steps reads
``samples_5m`` rows as points, not a million ``samples_1m`` rows) among those still holding the
range's start.

Counters asked as a rate give, per step, the increase of the last value since the previous
step divided by the seconds between the two; a drop is a counter reset and counts as an
increase from zero. Gauges in the same query keep the chosen aggregation.

On plain PostgreSQL the rollup tables are complete up to their watermark; buckets after it
are computed from raw rows on the fly (what TimescaleDB's real-time aggregates do), so a
range reaching up to now is still complete.

When the step is the rollup's own width (a day at 1-minute steps from the 1m rollup), each
point is one rollup row: the statement reads the rows as they are instead of aggregating them
again (`ROLLUP_ROW`), which gives the same numbers without PostgreSQL's hash aggregate and sort.
Either way PostgreSQL hands back one row per series with its times and values as arrays, so
the points are built without Python work per point.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import asyncpg
import msgspec

from unity.schemas.storage import (
    ORIGIN,
    TIERS,
    TIMESCALE_EXTENSION_SQL,
    TIMESCALE_HYPERTABLE_SQL,
    Retention,
    floor,
)

Aggregation = Literal["avg", "min", "max", "last", "sum", "count"]
Resolution = Literal["raw", "1m", "5m", "1h"]

AGGREGATIONS: tuple[Aggregation, ...] = ("avg", "min", "max", "last", "sum", "count")
# Finest first, as schemas.storage.TIERS lists them.
RESOLUTIONS: tuple[Resolution, ...] = ("raw", *(cast(Resolution, t.name) for t in TIERS))
WIDTHS: dict[Resolution, int] = {
    "raw": 1,
    **{cast(Resolution, t.name): int(t.width.total_seconds()) for t in TIERS},
}
TABLES: dict[Resolution, str] = {
    "raw": "samples",
    **{cast(Resolution, t.name): t.table for t in TIERS},
}
# Steps an automatic choice picks from, in seconds.
STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
DEFAULT_MAX_POINTS = 250_000
# For the API's connections. asyncpg prepares every statement, and after five runs PostgreSQL
# may switch to a generic plan, blind to the ids and the range: a week of 100 series then lost
# the rollup key's index-only scan for a scan and sort at twice the time (bench_query).
POOL_SETTINGS = {"plan_cache_mode": "force_custom_plan"}

# Bucket starts travel as epoch seconds: decoding 200 000 floats is far cheaper than datetimes.
EPOCH = "date_part('epoch', {})"
LAST_OF = "(max(ARRAY[date_part('epoch', {t}), {v}]))[2]"
RAW_AGG: dict[Aggregation, str] = {
    "avg": "avg(value)",
    "min": "min(value)",
    "max": "max(value)",
    "sum": "sum(value)",
    "count": "count(*)::float8",
    "last": LAST_OF.format(t="time", v="value"),
}
ROLLUP_AGG: dict[Aggregation, str] = {
    # sum(bigint) is numeric, slow; float8 sums integers exactly up to 2**53.
    "avg": "sum(sum) / sum(count::float8)",
    "min": "min(min)",
    "max": "max(max)",
    "sum": "sum(sum)",
    "count": "sum(count::float8)",
    "last": LAST_OF.format(t="bucket", v="last"),
}
# One rollup row as one point: ROLLUP_AGG over a single row, written without the aggregate.
ROLLUP_ROW: dict[Aggregation, str] = {
    "avg": "sum / count::float8",
    "min": "min",
    "max": "max",
    "sum": "sum",
    "count": "count::float8",
    "last": "last",
}


class QueryError(ValueError):
    """The query cannot be answered as asked."""


class TooManyPoints(QueryError):
    """The answer would exceed the points cap."""


class SeriesData(msgspec.Struct, frozen=True):
    id: int
    rate: bool  # True: values are per-second rates of a counter
    points: list[tuple[float, float]]


class QueryResult(msgspec.Struct, frozen=True):
    start: datetime
    end: datetime
    step: float
    resolution: Resolution
    aggregation: Aggregation
    series: list[SeriesData]


@dataclass(frozen=True, slots=True)
class Plan:
    resolution: Resolution
    step: int
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Statement:
    plan: Plan
    sql: str
    args: tuple[Any, ...]


def _ceil(t: datetime, width: timedelta) -> datetime:
    lo = floor(t, width)
    return lo if lo == t else lo + width


def plan(
    start: datetime,
    end: datetime,
    step: float | None,
    n_series: int,
    max_points: int = DEFAULT_MAX_POINTS,
    resolution: Resolution | Literal["auto"] = "auto",
    retention: Retention | None = None,
    now: datetime | None = None,
) -> Plan:
    """Choose the resolution and step, and widen the range to whole steps."""
    if start.tzinfo is None or end.tzinfo is None:
        raise QueryError("start and end need a time zone")
    if start >= end:
        raise QueryError("start must be before end")
    if step is not None and (step < 1 or step != int(step)):
        raise QueryError(f"step must be a whole number of seconds >= 1, not {step}")
    retention = retention or Retention()
    now = now or datetime.now(UTC)
    n = max(n_series, 1)
    span = (end - start).total_seconds()
    asked = step is not None
    if step is None:
        # +1: widening the range to whole steps can add one bucket.
        fitting = [s for s in STEPS if n * (math.ceil(span / s) + 1) <= max_points]
        if not fitting:
            raise TooManyPoints(f"{n} series over {span:.0f}s exceed {max_points} points")
        step = fitting[0]
    seconds = int(step)
    kept: dict[Resolution, timedelta] = {"raw": retention.raw}
    kept.update((cast(Resolution, t.name), retention.of(t.retention)) for t in TIERS)
    coarsest = RESOLUTIONS[-1]

    def holds(r: Resolution) -> bool:
        # The coarsest tier is the last resort, whatever it still holds.
        return r == coarsest or start >= now - kept[r]

    if resolution == "auto":
        # The finest resolution still holding the start; the step grows to a multiple of it.
        finest = next(r for r in RESOLUTIONS if holds(r))
        width = WIDTHS[finest]
        seconds = math.ceil(seconds / width) * width
        # The coarsest that divides the step: the fewest rows that still give every point.
        chosen = next(r for r in reversed(RESOLUTIONS) if seconds % WIDTHS[r] == 0 and holds(r))
    else:
        width = WIDTHS[resolution]
        if not asked:
            # The automatic step grows to a whole number of the asked resolution's buckets.
            seconds = math.ceil(seconds / width) * width
        elif seconds % width:
            raise QueryError(f"step {seconds}s is not a multiple of the {resolution} resolution")
        chosen = resolution
    width_td = timedelta(seconds=seconds)
    start, end = floor(start, width_td), _ceil(end, width_td)
    points = n * int((end - start) / width_td)
    if points > max_points:
        raise TooManyPoints(
            f"{n} series at a {seconds}s step make {points} points, more than {max_points}"
        )
    return Plan(chosen, seconds, start, end)


def _rollup_sql(table: str, width: int, with_raw: bool, watermark: bool) -> str:
    """Rollup-shaped rows: stored buckets, plus (plain path) buckets after the watermark."""
    upto = " AND bucket < $5" if watermark else ""
    stored = (
        f"SELECT bucket, series_id, min, max, sum, count, last FROM {table} "  # noqa: S608
        f"WHERE series_id = ANY($1::bigint[]) AND bucket >= $2 AND bucket < $3{upto}"
    )
    if not with_raw:
        return stored
    since = "greatest($2, $5)" if watermark else "$2"
    live = (
        f"SELECT date_bin(interval '{width} seconds', time, $4), series_id, "  # noqa: S608
        "min(value), max(value), sum(value), count(*), "
        f"{LAST_OF.format(t='time', v='value')} "
        "FROM samples WHERE series_id = ANY($1::bigint[]) "
        f"AND time >= {since} AND time < $3 GROUP BY 1, 2"
    )
    return f"{stored} UNION ALL {live}"


def _per_series(points: str, rate: bool, order: str = "t") -> str:
    """One row per series, ordered by id, with the points of ``points`` (columns series_id, t,
    v and, for a rate, last) as arrays in time order; ``order`` is the column to sort by."""
    last = f", array_agg(last ORDER BY {order})" if rate else ""
    return (
        f"SELECT series_id, array_agg(t ORDER BY {order}), array_agg(v ORDER BY {order}){last} "  # noqa: S608
        f"FROM ({points}) p GROUP BY 1 ORDER BY 1"
    )


async def _timescale(db: asyncpg.Pool | asyncpg.Connection) -> bool:
    """Whether this database took the TimescaleDB path (rollups are continuous aggregates)."""
    return bool(await db.fetchval(TIMESCALE_EXTENSION_SQL)) and bool(
        await db.fetchval(TIMESCALE_HYPERTABLE_SQL)
    )


async def prepare(
    db: asyncpg.Pool | asyncpg.Connection,
    series_ids: Sequence[int],
    p: Plan,
    aggregation: Aggregation = "avg",
    rate: bool = False,
) -> Statement:
    """The one SQL statement that answers a plan (tests EXPLAIN it)."""
    if aggregation not in AGGREGATIONS:
        raise QueryError(f"unknown aggregation {aggregation!r}; use one of {AGGREGATIONS}")
    step_td = timedelta(seconds=p.step)
    # A rate needs the step before the first one.
    first = p.start - step_td if rate else p.start
    ids = list(series_ids)
    if p.resolution == "raw":
        last_col = f", {RAW_AGG['last']} AS last" if rate else ""
        points = (
            f"SELECT series_id, {EPOCH.format('date_bin($4::interval, time, $5)')} AS t, "  # noqa: S608
            f"{RAW_AGG[aggregation]} AS v{last_col} FROM samples "
            "WHERE series_id = ANY($1::bigint[]) AND time >= $2 AND time < $3 GROUP BY 1, 2"
        )
        return Statement(p, _per_series(points, rate), (ids, first, p.end, step_td, ORIGIN))
    table = TABLES[p.resolution]
    width = WIDTHS[p.resolution]
    with_raw = False
    done: datetime | None = None
    if not await _timescale(db):
        done = await db.fetchval(
            "SELECT done_until FROM rollup_watermarks WHERE resolution = $1", table
        )
        with_raw = done is None or done < p.end
    # With a watermark (a bucket edge: rollups advance by whole buckets) every series and
    # bucket comes in one row, stored or live: a step of the rollup's width reads rows as points.
    watermark = with_raw and done is not None
    one_row_per_bucket = watermark or not with_raw
    rows = _rollup_sql(table, width, with_raw, watermark)
    # $4 is the bins' origin, for the live buckets and for the steps; $5 the watermark.
    args: list[Any] = [ids, first, p.end, ORIGIN, *([done] if watermark else [])]
    columns = "r(bucket, series_id, min, max, sum, count, last)"
    if p.step == width and one_row_per_bucket:
        last_col = ", last" if rate else ""
        # Sorted by the bucket itself, not its epoch: the rollup's key (series_id, bucket)
        # then hands the rows over in order and PostgreSQL sorts nothing.
        points = (
            f"SELECT series_id, bucket, {EPOCH.format('bucket')} AS t, "  # noqa: S608
            f"{ROLLUP_ROW[aggregation]} AS v{last_col} FROM ({rows}) {columns}"
        )
        sql = _per_series(points, rate, order="bucket")
        return Statement(p, sql, tuple(args if with_raw else args[:3]))
    last_col = f", {ROLLUP_AGG['last']} AS last" if rate else ""
    n = len(args) + 1
    points = (
        f"SELECT series_id, {EPOCH.format(f'date_bin(${n}::interval, bucket, $4)')} AS t, "  # noqa: S608
        f"{ROLLUP_AGG[aggregation]} AS v{last_col} FROM ({rows}) {columns} GROUP BY 1, 2"
    )
    return Statement(p, _per_series(points, rate), (*args, step_td))


def _rates(times: list[float], lasts: list[float], start: float) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for i in range(1, len(times)):
        t, value = times[i], lasts[i]
        if t >= start:
            before, then = lasts[i - 1], times[i - 1]
            increase = value - before if value >= before else value
            points.append((t, increase / (t - then)))
    return points


async def query(
    db: asyncpg.Pool | asyncpg.Connection,
    series_ids: Sequence[int],
    start: datetime,
    end: datetime,
    step: float | None = None,
    aggregation: Aggregation = "avg",
    rate: bool = False,
    max_points: int = DEFAULT_MAX_POINTS,
    resolution: Resolution | Literal["auto"] = "auto",
    retention: Retention | None = None,
    now: datetime | None = None,
) -> QueryResult:
    """Points of ``series_ids`` over [start, end) at ``step`` seconds (chosen when None).

    With ``rate``, counter series come back as per-second rates (see the module docstring).
    Raises QueryError (a ValueError) for a bad request, TooManyPoints over ``max_points``.
    """
    p = plan(start, end, step, len(series_ids), max_points, resolution, retention, now)
    stmt = await prepare(db, series_ids, p, aggregation, rate)
    counters: set[int] = set()
    if rate:
        kinds = await db.fetch(
            "SELECT id FROM series WHERE id = ANY($1::bigint[]) AND kind = 'counter'",
            list(series_ids),
        )
        counters = {r["id"] for r in kinds}
    begin = p.start.timestamp()
    series: list[SeriesData] = []
    for row in await db.fetch(stmt.sql, *stmt.args):
        sid, times, values = row[0], row[1], row[2]
        if sid in counters:
            series.append(SeriesData(sid, True, _rates(times, row[3], begin)))
        else:
            # Only a rate reads the step before the start.
            i = bisect_left(times, begin)
            series.append(SeriesData(sid, False, list(zip(times[i:], values[i:], strict=True))))
    return QueryResult(p.start, p.end, float(p.step), p.resolution, aggregation, series)
