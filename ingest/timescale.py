"""The TimescaleDB path: hypertables, continuous aggregates and policies do the storage work.

Migration 0003 creates the hypertables (1-day chunks), compression of ``samples`` (segmented by
``series_id``, ordered by time, after 2 days), the continuous aggregates ``samples_1m`` and
``samples_1h`` (real-time: ``materialized_only = false``) with their refresh policies, and
retention policies with the default windows. This module keeps the retention policies in line
with the settings and runs the same work on demand (``unity maintain --once``, tests).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import asyncpg

log = logging.getLogger(__name__)

CAGGS = ("samples_1m", "samples_1h")


async def installed(conn: asyncpg.Connection) -> bool:
    """Whether this database took the TimescaleDB path (the extension is created in it)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    )
    return found


async def apply_retention(conn: asyncpg.Connection, keep: dict[str, timedelta]) -> None:
    """Replace each relation's retention policy with the configured window."""
    for relation, window in keep.items():
        async with conn.transaction():
            await conn.execute(
                "SELECT remove_retention_policy($1::text::regclass, if_exists => true)", relation
            )
            await conn.execute(
                "SELECT add_retention_policy($1::text::regclass, drop_after => $2::interval)",
                relation,
                window,
            )


async def refresh(conn: asyncpg.Connection, closed_until: dict[str, datetime]) -> None:
    """Materialize every closed bucket; the refresh only does work where data changed.

    ``refresh_continuous_aggregate`` cannot run inside a transaction block: ``conn`` must not
    be in one (asyncpg runs single statements in autocommit).
    """
    for view, until in closed_until.items():
        await conn.execute(
            "CALL refresh_continuous_aggregate("
            "$1::text::regclass, NULL::timestamptz, $2::timestamptz)",
            view,
            until,
        )


async def drop_chunks(conn: asyncpg.Connection, keep: dict[str, timedelta]) -> int:
    """Drop the chunks entirely older than each relation's window; returns how many."""
    dropped = 0
    for relation, window in keep.items():
        rows = await conn.fetch(
            "SELECT drop_chunks($1::text::regclass, older_than => $2::interval)", relation, window
        )
        dropped += len(rows)
    if dropped:
        log.info("dropped %d chunks past retention", dropped)
    return dropped
