from __future__ import annotations

import asyncpg

from compose import migrate
from tests.conftest import Env

TABLES = {
    "series",
    "samples",
    "plugin_runs",
    "events",
    "plugins",
    "api_tokens",
    "alert_rules",
    "alerts",
}


async def _tables(env: Env) -> set[str]:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


async def test_upgrade_downgrade_upgrade(env: Env) -> None:
    assert await _tables(env) == TABLES
    assert "0002 (head)" in await migrate.current(env.ep)
    await migrate.downgrade(env.ep, "base")
    assert await _tables(env) == set()
    await migrate.upgrade(env.ep)
    await migrate.upgrade(env.ep)  # re-running is a no-op
    assert await _tables(env) == TABLES
