"""Sample rows into PostgreSQL: binary COPY, or ON CONFLICT DO NOTHING after a duplicate."""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg

log = logging.getLogger(__name__)

Row = tuple[datetime, int, float]
COLUMNS = ("time", "series_id", "value")


async def write_samples(conn: asyncpg.Connection, rows: list[Row]) -> str:
    """Write rows inside the caller's transaction; returns which path was taken.

    COPY is the fast path. A unique violation means a redelivery, a replay or a duplicate
    inside the batch: the rows then go through a staging table and ``ON CONFLICT DO NOTHING``,
    which stores each (series, time) exactly once.
    """
    if not rows:
        return "empty"
    try:
        async with conn.transaction():  # a savepoint, so the fallback can run after a failure
            await conn.copy_records_to_table("samples", records=rows, columns=COLUMNS)
    except asyncpg.UniqueViolationError:
        pass
    else:
        return "copy"
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS samples_stage "
        "(time timestamptz, series_id bigint, value double precision) ON COMMIT DELETE ROWS"
    )
    await conn.copy_records_to_table("samples_stage", records=rows, columns=COLUMNS)
    await conn.execute(
        "INSERT INTO samples (time, series_id, value) "
        "SELECT time, series_id, value FROM samples_stage "
        "ON CONFLICT (series_id, time) DO NOTHING"
    )
    await conn.execute("TRUNCATE samples_stage")
    return "merge"
