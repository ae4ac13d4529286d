"""The TimescaleDB path: hypertables, continuous aggregates and policies do the storage work.

Migration 0003 creates the hypertables (1-day chunks), compression of ``samples`` (segmented by
``series_id``, ordered by time descending, after 2 days), the continuous aggregates
``samples_1m`` and ``samples_1h`` (real-time: ``materialized_only = false``) with their refresh
policies, and retention policies with the default windows; migration 0008 stacks ``samples_5m``
on ``samples_1m`` (a hierarchical continuous aggregate, TimescaleDB 2.9 or later). This module
keeps the retention policies in line with the settings and runs the same work on demand
(``unity maintain``, tests).

Dropping raw chunks logs an invalidation for their time range, and a refresh that covers such a
range finds no raw rows there and deletes the buckets it held. So no refresh may reach below
the raw retention window once its buckets are stored: neither ours (``refresh`` is given a
window start by the caller) nor the refresh policies (``start_offset`` well inside the window).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from unity.schemas.storage import TIERS, TIMESCALE_EXTENSION_SQL, TIMESCALE_HYPERTABLE_SQL

log = logging.getLogger(__name__)

# Continuous aggregates and their bucket widths (time_bucket aligns these on UTC epoch multiples).
CAGGS = {tier.table: tier.width for tier in TIERS}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The policies the migration creates; tests pause them in their template database.
POLICIES = ("policy_compression", "policy_retention", "policy_refresh_continuous_aggregate")

# Policies per relation: a continuous aggregate's job names its materialization hypertable in
# older TimescaleDB 2.x and the view itself in newer ones; the join makes both read as the view.
_JOBS = """
    SELECT coalesce(a.view_name, j.hypertable_name)::text AS relation, j.job_id, j.config
    FROM timescaledb_information.jobs j
    LEFT JOIN timescaledb_information.continuous_aggregates a
      ON a.materialization_hypertable_schema = j.hypertable_schema
     AND a.materialization_hypertable_name = j.hypertable_name
    WHERE j.proc_name = $1
"""


async def installed(conn: asyncpg.Connection) -> bool:
    """Whether this database took the TimescaleDB path: ``samples`` is a hypertable.

    The extension alone is not enough: it may be created (by an image's init script, say) in
    a database whose migration took the plain path before it was available.
    """
    if not await conn.fetchval(TIMESCALE_EXTENSION_SQL):
        return False
    found: bool = await conn.fetchval(TIMESCALE_HYPERTABLE_SQL)
    return found


async def retention_policies(conn: asyncpg.Connection) -> dict[str, timedelta]:
    rows = await conn.fetch(
        f"SELECT relation, (config->>'drop_after')::interval AS drop_after FROM ({_JOBS}) p",  # noqa: S608 -- constant
        "policy_retention",
    )
    return {r["relation"]: r["drop_after"] for r in rows}


async def refresh_policies(conn: asyncpg.Connection) -> dict[str, timedelta | None]:
    """Each continuous aggregate's refresh policy ``start_offset`` (None: from the beginning)."""
    rows = await conn.fetch(
        f"SELECT relation, (config->>'start_offset')::interval AS start_offset "  # noqa: S608
        f"FROM ({_JOBS}) p",
        "policy_refresh_continuous_aggregate",
    )
    return {r["relation"]: r["start_offset"] for r in rows}


async def apply_retention(conn: asyncpg.Connection, keep: dict[str, timedelta]) -> None:
    """Give each relation's retention policy the configured window.

    A policy that already has it is left alone: its job keeps its id and schedule.
    """
    current = await retention_policies(conn)
    for relation, window in keep.items():
        if current.get(relation) == window:
            continue
        async with conn.transaction():
            await conn.execute(
                "SELECT remove_retention_policy($1::text::regclass, if_exists => true)", relation
            )
            await conn.execute(
                "SELECT add_retention_policy($1::text::regclass, drop_after => $2::interval)",
                relation,
                window,
            )


async def unsafe_refresh_policies(conn: asyncpg.Connection, raw: timedelta) -> list[str]:
    """Continuous aggregates whose refresh policy reaches back past the raw retention window.

    Such a policy deletes the buckets of every raw chunk dropped for retention. The migration's
    offsets (1 h and 6 h) are far inside the shortest raw window the settings allow (1 day);
    this finds a policy changed by hand.
    """
    return [
        view
        for view, start in (await refresh_policies(conn)).items()
        if start is None or start > raw
    ]


def _bucket(t: datetime, width: timedelta) -> datetime:
    return EPOCH + (t - EPOCH) // width * width


def _timestamp(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError(f"refresh bounds need a time zone, not {t!r}")
    # isoformat() of a datetime is digits and "-:.+T" only: nothing to escape.
    return f"timestamptz '{t.astimezone(UTC).isoformat()}'"


async def refresh(conn: asyncpg.Connection, view: str, start: datetime, end: datetime) -> bool:
    """Materialize the whole buckets of ``view`` inside [start, end); False if there are none.

    Only buckets whose raw rows changed since they were stored are recomputed. ``start`` must
    not reach below rows dropped for retention (see the module docstring).

    ``refresh_continuous_aggregate`` commits inside, so it refuses to run in a transaction block
    (``PreventInTransactionBlock``). Sent with bind parameters it would go through the extended
    protocol, whose Execute runs in an implicit transaction that only Sync ends; that passes
    as long as the driver syncs before each Execute (asyncpg does), but a second Execute before
    Sync turns it into a transaction block. A single statement in a simple Query message is
    never in one, so the call goes as text with no arguments: the view is one of ours and the
    bounds are literals formatted here from datetimes, never anything a caller typed.
    """
    width = CAGGS.get(view)
    if width is None:
        raise ValueError(f"{view!r} is not one of the continuous aggregates {tuple(CAGGS)}")
    if conn.is_in_transaction():
        raise RuntimeError("refresh_continuous_aggregate cannot run inside a transaction")
    # TimescaleDB shrinks the window to whole buckets and refuses one without any.
    lo, hi = _bucket(start, width), _bucket(end, width)
    if lo < start:
        lo += width
    if lo >= hi:
        return False
    await conn.execute(
        f"CALL refresh_continuous_aggregate('{view}', {_timestamp(lo)}, {_timestamp(hi)})"
    )
    return True


async def materialization(conn: asyncpg.Connection, view: str) -> str:
    """The quoted name of the hypertable that holds ``view``'s stored buckets."""
    name: str | None = await conn.fetchval(
        "SELECT format('%I.%I', materialization_hypertable_schema, "
        "materialization_hypertable_name) FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = $1 AND view_schema = current_schema()",
        view,
    )
    if name is None:
        raise LookupError(f"{view} is not a continuous aggregate in this database")
    return name


async def has_stored_buckets(conn: asyncpg.Connection, view: str) -> bool:
    table = await materialization(conn, view)
    # The name comes quoted from format('%I.%I') above.
    found: bool = await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})")  # noqa: S608
    return found


async def drop_chunks(conn: asyncpg.Connection, keep_from: dict[str, datetime]) -> list[str]:
    """Drop the chunks of each relation entirely older than its cut-off; returns their names."""
    dropped: list[str] = []
    for relation, cutoff in keep_from.items():
        rows = await conn.fetch(
            "SELECT drop_chunks($1::text::regclass, older_than => $2::timestamptz)",
            relation,
            cutoff,
        )
        dropped.extend(r[0] for r in rows)
    if dropped:
        log.info("dropped %d chunks past retention", len(dropped))
    return dropped
