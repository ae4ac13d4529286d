"""History queries: pick raw samples, the 1m or the 1h rollup, and answer the same way from each.

The answer for a step is computed from whatever resolution serves it, and every resolution
gives the same numbers: the range is widened to whole steps, steps are whole multiples of the
rollup they read, and rollups keep min, max, sum, count and last per bucket, which compose
exactly. Points are ``(bucket start in epoch seconds, value)``; empty buckets are left out.

Counters asked as a rate give, per step, the increase of the last value since the previous
step divided by the seconds between the two; a drop is a counter reset and counts as an
increase from zero. Gauges in the same query keep the chosen aggregation.

On plain PostgreSQL the rollup tables are complete up to their watermark; buckets after it
are computed from raw rows on the fly (what TimescaleDB's real-time aggregates do), so a
range reaching up to now is still complete.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Literal

import asyncpg
import msgspec

from ingest import timescale
from ingest.maintenance import ORIGIN, Retention, floor

Aggregation = Literal["avg", "min", "max", "last", "sum", "count"]
Resolution = Literal["raw", "1m", "1h"]

AGGREGATIONS: tuple[Aggregation, ...] = ("avg", "min", "max", "last", "sum", "count")
WIDTHS: dict[Resolution, int] = {"raw": 1, "1m": 60, "1h": 3600}
TABLES: dict[Resolution, str] = {"raw": "samples", "1m": "samples_1m", "1h": "samples_1h"}
# Steps an automatic choice picks from, in seconds.
STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
DEFAULT_MAX_POINTS = 250_000

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
    if step is None:
        # +1: widening the range to whole steps can add one bucket.
        fitting = [s for s in STEPS if n * (math.ceil(span / s) + 1) <= max_points]
        if not fitting:
            raise TooManyPoints(f"{n} series over {span:.0f}s exceed {max_points} points")
        step = fitting[0]
    seconds = int(step)
    kept: dict[Resolution, timedelta] = {"raw": retention.raw, "1m": retention.m1}
    if resolution == "auto":
        # The finest resolution still holding the start; the step grows to a multiple of it.
        finest: Resolution = next((r for r in kept if start >= now - kept[r]), "1h")
        width = WIDTHS[finest]
        seconds = math.ceil(seconds / width) * width
        chosen: Resolution = next(r for r in ("1h", "1m", "raw") if seconds % WIDTHS[r] == 0)
    else:
        if seconds % WIDTHS[resolution]:
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
    last_col = ""
    if p.resolution == "raw":
        if rate:
            last_col = f", {RAW_AGG['last']}"
        sql = (
            f"SELECT series_id, {EPOCH.format('date_bin($4::interval, time, $5)')} AS t, "  # noqa: S608
            f"{RAW_AGG[aggregation]} AS v{last_col} FROM samples "
            "WHERE series_id = ANY($1::bigint[]) AND time >= $2 AND time < $3 "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
        return Statement(p, sql, (ids, first, p.end, step_td, ORIGIN))
    table = TABLES[p.resolution]
    args: list[Any] = [ids, first, p.end, ORIGIN]
    if await timescale.installed(db):
        rows = _rollup_sql(table, WIDTHS[p.resolution], with_raw=False, watermark=False)
    else:
        done: datetime | None = await db.fetchval(
            "SELECT done_until FROM rollup_watermarks WHERE resolution = $1", table
        )
        if done is None:
            rows = _rollup_sql(table, WIDTHS[p.resolution], with_raw=True, watermark=False)
        elif done >= p.end:
            rows = _rollup_sql(table, WIDTHS[p.resolution], with_raw=False, watermark=False)
        else:
            rows = _rollup_sql(table, WIDTHS[p.resolution], with_raw=True, watermark=True)
            args.append(done)
    if rate:
        last_col = f", {ROLLUP_AGG['last']}"
    n = len(args) + 1
    sql = (
        f"SELECT series_id, {EPOCH.format(f'date_bin(${n}::interval, bucket, $4)')} AS t, "  # noqa: S608
        f"{ROLLUP_AGG[aggregation]} AS v{last_col} FROM ({rows}) r(bucket, series_id, min, "
        "max, sum, count, last) GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return Statement(p, sql, (*args, step_td))


def _rates(rows: list[asyncpg.Record], start: float) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    prev: tuple[float, float] | None = None
    for r in rows:
        t, value = r[1], r[3]
        if prev is not None and t >= start:
            increase = value - prev[1] if value >= prev[1] else value
            points.append((t, increase / (t - prev[0])))
        prev = (t, value)
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
    # Rows come ordered by series, then time.
    for sid, group in itertools.groupby(await db.fetch(stmt.sql, *stmt.args), itemgetter(0)):
        if sid in counters:
            series.append(SeriesData(sid, True, _rates(list(group), begin)))
        else:
            series.append(SeriesData(sid, False, [(r[1], r[2]) for r in group if r[1] >= begin]))
    return QueryResult(p.start, p.end, float(p.step), p.resolution, aggregation, series)
