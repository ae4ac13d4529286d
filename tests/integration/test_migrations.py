from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from alembic.script import ScriptDirectory

from tests.servers import Env
from unity.compose import migrate
from unity.ingest import timescale

TABLES = {
    "series",
    "samples",
    "samples_1m",
    "samples_5m",
    "samples_1h",
    "plugin_runs",
    "events",
    "plugins",
    "plugin_catalogue",
    "api_tokens",
    "alert_rules",
    "alerts",
    "alert_history",
    "alert_silences",
    "alert_maintenance",
    "alert_channels",
    "alert_deliveries",
    "web_sessions",
}
PLAIN_ONLY = {"rollup_watermarks"}


async def _connect(env: Env) -> asyncpg.Connection:
    return await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)


async def _relations(env: Env) -> set[str]:
    """Tables and views of the schema, partitions left out (they come and go with the days)."""
    conn = await _connect(env)
    try:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')"
            " AND NOT c.relispartition AND c.relname <> 'alembic_version'"
        )
    finally:
        await conn.close()
    return {r["relname"] for r in rows}


async def _expected(env: Env) -> set[str]:
    conn = await _connect(env)
    try:
        hypertables = await timescale.installed(conn)
    finally:
        await conn.close()
    return TABLES if hypertables else TABLES | PLAIN_ONLY


async def test_upgrade_downgrade_upgrade(env: Env) -> None:
    expected = await _expected(env)
    assert await _relations(env) == expected
    head = ScriptDirectory(migrate.SCRIPT_LOCATION).get_current_head()
    assert f"{head} (head)" in await migrate.current(env.ep)
    await migrate.downgrade(env.ep, "base")
    assert await _relations(env) == set()
    await migrate.upgrade(env.ep)
    await migrate.upgrade(env.ep)  # re-running is a no-op
    assert await _relations(env) == expected


async def test_storage_migration_keeps_rows_both_ways(env: Env) -> None:
    """0002 -> 0003 moves existing samples and events into the new tables, and back.

    Ages stay inside the retention windows: on TimescaleDB the new retention policies may run
    as soon as they are created.
    """
    now = datetime.now(UTC)
    samples = [
        (now - timedelta(days=d, seconds=s), s % 3 + 1, float(d * 100 + s))
        for d in (0, 1, 5, 20)
        for s in range(5)
    ]
    events = [
        (now - timedelta(days=d), "h", "p", "", "k", "info", f"e{d}", "{}") for d in (0, 3, 25)
    ]
    await migrate.downgrade(env.ep, "0002")
    conn = await _connect(env)
    try:
        assert (
            await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'samples'")
            == "r"
        )
        await conn.copy_records_to_table(
            "samples", records=samples, columns=("time", "series_id", "value")
        )
        await conn.executemany(
            "INSERT INTO events (time, host, plugin, instance, kind, severity, message, data)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
            events,
        )
    finally:
        await conn.close()

    async def stored() -> tuple[set[tuple[datetime, int, float]], set[str]]:
        conn = await _connect(env)
        try:
            rows = await conn.fetch("SELECT time, series_id, value FROM samples")
            messages = await conn.fetch("SELECT message FROM events")
        finally:
            await conn.close()
        return {tuple(r) for r in rows}, {r["message"] for r in messages}

    want = ({(t, sid, v) for t, sid, v in samples}, {e[6] for e in events})
    await migrate.upgrade(env.ep)
    assert await stored() == want
    conn = await _connect(env)
    try:
        # On the plain path the rows went into day partitions, not the DEFAULT partition.
        if await conn.fetchval("SELECT to_regclass('samples_default') IS NOT NULL"):
            assert await conn.fetchval("SELECT count(*) FROM samples_default") == 0
            assert await conn.fetchval("SELECT count(*) FROM events_default") == 0
    finally:
        await conn.close()
    await migrate.downgrade(env.ep, "0002")
    assert await stored() == want
    await migrate.upgrade(env.ep)
    assert await stored() == want
