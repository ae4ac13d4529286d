"""``*_over_time`` over wide windows from the 1m or 1h rollup instead of raw samples.

A window ``[t - range, t]`` whose ends lie on bucket edges is the buckets that start in
``[t - range, t)`` plus the samples stamped exactly ``t`` (they open the next bucket). Rollup
rows keep sum, count, min, max and last per bucket, which compose exactly, so sum, count, avg,
min, max, last and present over such a window come out as from raw samples, reading one row per
bucket: a month of ``avg_over_time(x[1h])`` at hourly steps reads 720 rows of the 1h rollup
per series, not 170 000 samples. Used when the range, the offset and every step are whole
multiples of the bucket width and steps are at least ``MIN_STEP_MS`` apart (or there is one
step); otherwise raw samples.

Rollup rows come as ``api/query.py`` reads them: TimescaleDB's real-time continuous aggregates,
or on plain PostgreSQL the stored rows before the rollup's watermark and, after it, buckets
computed from raw rows in the same statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np

from unity.api.prometheus import storage
from unity.api.prometheus.functions import Window
from unity.api.prometheus.labels import Labels, Matcher, labels_of_row
from unity.api.prometheus.storage import Raw, Times
from unity.api.prometheus.values import Floats, Mask, Series, drop_name
from unity.schemas.storage import (
    ORIGIN,
    TIERS,
    TIMESCALE_EXTENSION_SQL,
    TIMESCALE_HYPERTABLE_SQL,
)

FUNCTIONS = frozenset(
    {
        "avg_over_time",
        "sum_over_time",
        "count_over_time",
        "min_over_time",
        "max_over_time",
        "last_over_time",
        "present_over_time",
    }
)
# Bucket width in ms -> rollup table, widest first: the tiers of schemas.storage.
TABLES = {
    int(tier.width.total_seconds() * 1000): tier.table
    for tier in sorted(TIERS, key=lambda t: t.width, reverse=True)
}
# The samples stamped at each step are looked up step by step: at 1-minute steps over a day
# (1 441 lookups per series) that cost about what reading the raw samples did.
MIN_STEP_MS = 300_000
ROW = np.dtype(
    [("fields", ">i2")]
    + [
        pair
        for name, kind in (
            ("id", ">i8"),
            ("bucket", ">i8"),
            ("sum", ">f8"),
            ("count", ">f8"),
            ("min", ">f8"),
            ("max", ">f8"),
            ("last", ">f8"),
        )
        for pair in ((f"{name}_len", ">i4"), (name, kind))
    ]
)
_LAST = "(max(ARRAY[date_part('epoch', time), value]))[2]"
_COLUMNS = "series_id::int8, bucket, sum::float8, count::float8, min::float8, max::float8, last"


def width_for(name: str, ref: Times, range_ms: int) -> int | None:
    """The widest bucket that answers ``name`` over these windows exactly, when reading it
    costs less than raw samples (one step, or steps at least ``MIN_STEP_MS`` apart)."""
    if name not in FUNCTIONS:
        return None
    step = int(ref[1] - ref[0]) if len(ref) > 1 else 0
    if 0 < step < MIN_STEP_MS:
        return None
    for width in TABLES:
        if range_ms % width == 0 and range_ms >= width and not (ref % width).any():
            return width
    return None


@dataclass(slots=True)
class Buckets:
    labels: Labels
    starts: Times
    sum: Floats
    count: Floats
    min: Floats
    max: Floats
    last: Floats


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def _rows_sql(conn: asyncpg.Connection, width: int) -> tuple[str, list[object]]:
    """Rollup rows of series ``$1`` with bucket starts in ``[$2, $3)``, and extra arguments."""
    table = TABLES[width]
    stored = (
        f"SELECT {_COLUMNS} FROM {table}"  # noqa: S608 -- constants
        " WHERE series_id = ANY($1::bigint[])"
        " AND bucket >= $2::timestamptz AND bucket < $3::timestamptz"
    )
    if await conn.fetchval(TIMESCALE_EXTENSION_SQL) and await conn.fetchval(
        TIMESCALE_HYPERTABLE_SQL
    ):
        return stored, []
    done = await conn.fetchval(
        "SELECT done_until FROM rollup_watermarks WHERE resolution = $1", table
    )
    live = (
        f"SELECT series_id::int8, date_bin(interval '{width // 1000} s', time, $4::timestamptz), "  # noqa: S608
        f"sum(value), count(*)::float8, min(value), max(value), {_LAST} FROM samples"
        " WHERE series_id = ANY($1::bigint[]) AND time >= {since} AND time < $3 GROUP BY 1, 2"
    )
    if done is None:
        return live.format(since="$2"), [ORIGIN]
    return (
        f"{stored} AND bucket < $5::timestamptz UNION ALL "
        + live.format(since="greatest($2::timestamptz, $5::timestamptz)"),
        [ORIGIN, done],
    )


async def _copy(conn: asyncpg.Connection, sql: str, *args: object) -> bytes:
    chunks: list[bytes] = []

    async def take(chunk: bytes) -> None:
        chunks.append(chunk)

    await conn.copy_from_query(sql, *args, output=take, format="binary")
    data = b"".join(chunks)
    return data[storage.COPY_HEADER : len(data) - 2]


async def over_time(
    conn: asyncpg.Connection,
    name: str,
    matchers: list[Matcher],
    ref: Times,
    range_ms: int,
    width: int,
) -> list[Series]:
    rows = await storage.series(conn, matchers, None, None)
    if not rows:
        return []
    ids = [r[0] for r in rows]
    sql, extra = await _rows_sql(conn, width)
    body = await _copy(conn, sql, ids, _at(int(ref[0]) - range_ms), _at(int(ref[-1])), *extra)
    found = np.frombuffer(body, dtype=ROW)
    exact = await storage.at_times(conn, ids, ref)
    series_ids = found["id"].astype(np.int64)
    starts = found["bucket"].astype(np.int64) // 1000 + storage.PG_EPOCH_MS
    order = np.lexsort((starts, series_ids))
    series_ids, starts = series_ids[order], starts[order]
    columns = [found[c].astype(np.float64)[order] for c in ("sum", "count", "min", "max", "last")]
    out: list[Series] = []
    for row in rows:
        lo, hi = np.searchsorted(series_ids, [row[0], row[0] + 1])
        buckets = Buckets(labels_of_row(row), starts[lo:hi], *(c[lo:hi] for c in columns))
        values, present = _combine(name, buckets, exact.get(row[0]), ref, range_ms)
        labels = buckets.labels if name == "last_over_time" else drop_name(buckets.labels)
        out.append(Series(labels, values, present))
    return out


def _combine(
    name: str, b: Buckets, exact: Raw | None, ref: Times, range_ms: int
) -> tuple[Floats, Mask]:
    def window(values: Floats) -> Window:
        return Window(Raw(b.labels, b.starts, values), ref, range_ms, closed=False)

    counts = window(b.count)
    n = counts.prefix(b.count) if len(b.starts) else np.zeros(len(ref))
    at = np.zeros(len(ref))
    has = np.zeros(len(ref), dtype=bool)
    if exact is not None:
        idx = np.searchsorted(ref, exact.times)
        at[idx], has[idx] = exact.values, True
    total = n + has
    present: Mask = total > 0
    empty = counts.n == 0
    with np.errstate(all="ignore"):
        if name == "count_over_time":
            return total, present
        if name == "present_over_time":
            return np.ones(len(ref)), present
        if name in ("sum_over_time", "avg_over_time"):
            s = (window(b.sum).prefix(b.sum) if len(b.starts) else np.zeros(len(ref))) + at
            return (s / total if name == "avg_over_time" else s), present
        if name == "last_over_time":
            last = b.last[counts.last] if len(b.starts) else np.zeros(len(ref))
            return np.where(has, at, last), present
        pick = np.minimum if name == "min_over_time" else np.maximum
        source = b.min if name == "min_over_time" else b.max
        inside = window(source).extreme(pick) if len(b.starts) else np.zeros(len(ref))
        values: Floats = np.where(empty, at, np.where(has, pick(inside, at), inside))
        return values, present
