"""Raw samples of the series a selector matches, read in one statement per selector.

PostgreSQL matches the series (labels compiled to SQL, values bound) and hands back one row
per series with its times and values as arrays, restricted to the windows the evaluation
steps read: one span when the windows overlap, and when the step is wider than the window (a
week at 1-hour steps), only the samples inside each step's window, joined against the steps
in SQL, so a wide step never reads the samples between its windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import numpy.typing as npt

from unity.api.prometheus.labels import Labels, Matcher, labels_of_row, where
from unity.api.prometheus.values import PromQLError

MAX_SERIES = 10_000
# Label names and values read only identities: a larger catalogue still fits in memory.
MAX_LISTED = 200_000
MAX_SAMPLES = 20_000_000

Times = npt.NDArray[np.int64]


@dataclass(slots=True)
class Raw:
    labels: Labels
    times: Times  # epoch milliseconds, ascending
    values: npt.NDArray[np.float64]


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def series(
    conn: asyncpg.Connection,
    matchers: list[Matcher],
    start_ms: int | None,
    end_ms: int | None,
    limit: int = MAX_SERIES,
) -> list[asyncpg.Record]:
    """Rows ``(id, host, plugin, instance, name, labels)`` of the matching series, seen in
    ``[start, end]`` when given."""
    args: list[object] = []
    text_args: list[str] = []
    clause = where(matchers, text_args)
    args.extend(text_args)
    if start_ms is not None:
        args.append(_at(start_ms))
        clause += f" AND s.last_seen >= ${len(args)}"
    if end_ms is not None:
        args.append(_at(end_ms))
        clause += f" AND s.first_seen <= ${len(args)}"
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT s.id, s.host, s.plugin, s.instance, s.name, s.labels::text FROM series s"  # noqa: S608 -- values are bind parameters
        f" WHERE {clause} ORDER BY s.id LIMIT {limit + 1}",
        *args,
    )
    if len(rows) > limit:
        raise PromQLError(f"more than {limit} series match the selector", "execution")
    return rows


# A row of `COPY (SELECT series_id, time, value ...) TO STDOUT (FORMAT binary)`: field count,
# then each field's length and big-endian value; timestamptz is microseconds since 2000-01-01.
ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("id_len", ">i4"),
        ("id", ">i8"),
        ("time_len", ">i4"),
        ("time", ">i8"),
        ("value_len", ">i4"),
        ("value", ">f8"),
    ]
)
COPY_HEADER = 19
PG_EPOCH_MS = 946_684_800_000


async def _copy(conn: asyncpg.Connection, sql: str, *args: object) -> npt.NDArray[np.void]:
    """The rows of ``sql`` (series_id, time, value) through binary COPY, decoded by numpy alone:
    no Python object per sample."""
    chunks: list[bytes] = []

    async def take(chunk: bytes) -> None:
        chunks.append(chunk)

    await conn.copy_from_query(sql, *args, output=take, format="binary")
    data = b"".join(chunks)
    body = data[COPY_HEADER : len(data) - 2]  # header and the -1 trailer
    if len(body) % ROW.itemsize:
        raise RuntimeError("unexpected binary COPY layout for samples")
    return np.frombuffer(body, dtype=ROW)


async def samples(
    conn: asyncpg.Connection, matchers: list[Matcher], steps: Times, window_ms: int
) -> list[Raw]:
    """Samples at ``[step - window, step]`` for every step (already shifted by any offset)."""
    rows = await series(conn, matchers, None, None)
    if not rows:
        return []
    ids = [r[0] for r in rows]
    first, last = int(steps[0]), int(steps[-1])
    step = int(steps[1] - steps[0]) if len(steps) > 1 else 0
    if step > window_ms:
        found = await _copy(
            conn,
            "SELECT x.series_id, x.time, x.value FROM generate_series($2::timestamptz, $3, $4) g(t)"
            " JOIN samples x ON x.series_id = ANY($1::bigint[])"
            " AND x.time >= g.t - $5::interval AND x.time <= g.t",
            ids,
            _at(first),
            _at(last),
            timedelta(milliseconds=step),
            timedelta(milliseconds=window_ms),
        )
    else:
        found = await _copy(
            conn,
            "SELECT x.series_id, x.time, x.value FROM samples x"
            " WHERE x.series_id = ANY($1::bigint[]) AND x.time >= $2 AND x.time <= $3",
            ids,
            _at(first - window_ms),
            _at(last),
        )
    if len(found) > MAX_SAMPLES:
        raise PromQLError(f"the query would load more than {MAX_SAMPLES} samples", "execution")
    # Sorted here: PostgreSQL's sort of a day of 100 series spilled to disk at the default
    # work_mem and took longer than the scan.
    series_ids = found["id"].astype(np.int64)
    micros = found["time"].astype(np.int64)
    order = np.lexsort((micros, series_ids))
    series_ids = series_ids[order]
    times = micros[order] // 1000 + PG_EPOCH_MS
    values = found["value"].astype(np.float64)[order]
    out: list[Raw] = []
    for row in rows:
        lo, hi = np.searchsorted(series_ids, [row[0], row[0] + 1])
        if hi > lo:
            out.append(Raw(labels_of_row(row), times[lo:hi], values[lo:hi]))
    return out


async def at_times(conn: asyncpg.Connection, ids: list[int], ref: Times) -> dict[int, Raw]:
    """Samples of ``ids`` stamped at one of the times ``ref`` (to the millisecond), by id."""
    found = await _copy(
        conn,
        "SELECT x.series_id, x.time, x.value FROM unnest($2::timestamptz[]) g(t)"
        " JOIN samples x ON x.series_id = ANY($1::bigint[])"
        " AND x.time >= g.t AND x.time < g.t + interval '1 millisecond'",
        ids,
        [_at(t) for t in ref.tolist()],
    )
    series_ids = found["id"].astype(np.int64)
    times = found["time"].astype(np.int64) // 1000 + PG_EPOCH_MS
    order = np.lexsort((times, series_ids))
    values = found["value"].astype(np.float64)[order]
    series_ids, times = series_ids[order], times[order]
    out: dict[int, Raw] = {}
    for sid in np.unique(series_ids).tolist():
        lo, hi = np.searchsorted(series_ids, [sid, sid + 1])
        out[sid] = Raw((), times[lo:hi], values[lo:hi])
    return out
