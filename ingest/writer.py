"""Everything a batch of messages holds, written in one transaction.

Samples go by binary COPY straight into ``samples`` (a partitioned parent or a hypertable
accepts COPY too); on a unique violation (a redelivery, a replay, two workers, a duplicate
inside the batch) they go through a staging table with ``ON CONFLICT DO NOTHING`` instead.

The rule for one series at one time (docs/operations.md): the first value committed wins. The
same value again is a duplicate and is dropped quietly; a different value is a conflict, which
the merge reports (row and stored value) so that its message goes to the DLQ as ``conflict``
and Valkey is given the stored value. Inside one batch the first in stream order wins.
Plugin runs, events and the registry's last-seen and health are written in the same commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import asyncpg

from unity.ingest.catalogue import Catalogue
from unity.ingest.copyformat import copy_packed, with_series
from unity.ingest.decoder import Work

log = logging.getLogger(__name__)

COLUMNS = ("time", "series_id", "value")
Path = Literal["empty", "copy", "merge"]


# (row index in the batch, the value stored for its series and time): a conflict.
Conflict = tuple[int, float]


@dataclass(frozen=True, slots=True)
class Written:
    path: Path
    series_looked_up: int
    conflicts: list[Conflict]


async def write_samples(conn: asyncpg.Connection, rows: list[bytes]) -> tuple[Path, list[Conflict]]:
    """Write packed rows inside the caller's transaction; returns which path was taken and the
    rows that met another value for their series and time."""
    if not rows:
        return "empty", []
    # A memoryview: asyncpg would take bytes for a file name (bytes are path-like).
    data = memoryview(copy_packed(rows))
    try:
        async with conn.transaction():  # a savepoint, so the fallback can run after a failure
            await conn.copy_to_table("samples", source=data, columns=COLUMNS, format="binary")
    except asyncpg.UniqueViolationError:
        pass
    else:
        return "copy", []
    # ord numbers the rows in COPY order (the batch's stream order): the first of a batch wins.
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS samples_stage "
        "(time timestamptz, series_id bigint, value double precision,"
        " ord bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DELETE ROWS"
    )
    await conn.copy_to_table("samples_stage", source=data, columns=COLUMNS, format="binary")
    await conn.execute(
        "INSERT INTO samples (time, series_id, value) "
        "SELECT DISTINCT ON (series_id, time) time, series_id, value FROM samples_stage "
        "ORDER BY series_id, time, ord "
        "ON CONFLICT (series_id, time) DO NOTHING"
    )
    # The identity is not reset by a rollback: rows are counted from this batch's first one.
    found = await conn.fetch(
        "SELECT st.ord - (SELECT min(ord) FROM samples_stage) AS row, s.value "
        "FROM samples_stage st JOIN samples s USING (series_id, time) "
        "WHERE s.value IS DISTINCT FROM st.value ORDER BY 1"
    )
    await conn.execute("TRUNCATE samples_stage")
    return "merge", [(r["row"], r["value"]) for r in found]


_RUNS = """
INSERT INTO plugin_runs (time, host, plugin, instance, status, message, duration_ms, samples)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT ON CONSTRAINT plugin_runs_identity DO NOTHING
"""

_EVENTS = """
INSERT INTO events (time, host, plugin, instance, kind, severity, message, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
ON CONFLICT ON CONSTRAINT events_identity DO NOTHING
"""

# A plugin that only publishes to NATS appears in the registry as 'discovered'. Last-seen and
# health only move forward, so a redelivery or a replay of old data never turns them back.
_REGISTRY = """
INSERT INTO plugins AS p (host, plugin, instance, source, last_seen, health, health_message,
                          health_at)
SELECT h, pl, i, 'discovered', ls, hs, coalesce(hm, ''), ha
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
            $7::timestamptz[]) AS u(h, pl, i, ls, hs, hm, ha)
ON CONFLICT ON CONSTRAINT plugins_identity DO UPDATE SET
    last_seen = GREATEST(p.last_seen, EXCLUDED.last_seen),
    (health, health_message, health_at) = (
        SELECT CASE WHEN newer THEN EXCLUDED.health ELSE p.health END,
               CASE WHEN newer THEN EXCLUDED.health_message ELSE p.health_message END,
               CASE WHEN newer THEN EXCLUDED.health_at ELSE p.health_at END
        FROM (SELECT EXCLUDED.health IS NOT NULL
                     AND (p.health_at IS NULL OR EXCLUDED.health_at >= p.health_at) AS newer) n
    )
"""


async def _write_registry(conn: asyncpg.Connection, work: Work) -> None:
    columns: list[list[object]] = [[], [], [], [], [], [], []]
    # Sorted: two workers touching the same plugins lock their rows in the same order.
    for source in sorted(work.seen):
        seen = work.seen[source]
        values = (
            *source,
            seen.last_seen,
            seen.health,
            seen.health_message if seen.health else None,
            seen.health_at,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    await conn.execute(_REGISTRY, *columns)


async def write_work(conn: asyncpg.Connection, catalogue: Catalogue, work: Work) -> Written:
    """Write ``work`` in one transaction on ``conn``; the caller acks after this returns."""
    async with conn.transaction():
        ids = await catalogue.resolve(conn, (spec for _, _, spec in work.unresolved))
        rows = work.rows
        for index, _, spec in work.unresolved:
            rows[index] = with_series(rows[index], ids[spec.key])
        path, conflicts = await write_samples(conn, work.rows)
        if work.runs:
            await conn.executemany(_RUNS, work.runs)
        if work.events:
            await conn.executemany(_EVENTS, work.events)
        if work.seen:
            await _write_registry(conn, work)
    # Only now are the new ids committed: cache them for the next batches.
    catalogue.learn(ids, work.unresolved)
    series_looked_up = len(ids)
    work.unresolved.clear()
    return Written(path, series_looked_up, conflicts)
