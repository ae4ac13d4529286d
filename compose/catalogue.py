"""Fill the registry's plugin catalogue from this install's built-in plugins.

Runs after every migration to the head (`unity migrate`, `unity up`), where the CLI may import
the plugins; the API then reads the catalogue from PostgreSQL.
"""

from __future__ import annotations

import msgspec

from unity.collectors.runtime.detection import builtin
from unity.sdk.connection import pg_connect
from unity.sdk.discovery import discover
from unity.sdk.settings import Endpoints

_UPSERT = """
INSERT INTO plugin_catalogue (plugin, name, version, description, config_schema, builtin)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::bool[])
ON CONFLICT (plugin) DO UPDATE SET
    name = EXCLUDED.name, version = EXCLUDED.version, description = EXCLUDED.description,
    config_schema = EXCLUDED.config_schema, builtin = EXCLUDED.builtin, updated_at = now()
"""


async def refresh_catalogue(ep: Endpoints) -> int:
    """Upsert every built-in plugin's metadata and config schema; returns how many."""
    plugins = [cls for cls in discover().values() if builtin(cls)]
    columns: list[list[object]] = [[], [], [], [], [], []]
    for cls in sorted(plugins, key=lambda c: c.id):
        schema = msgspec.json.encode(cls.config_schema()).decode()
        values = (cls.id, cls.name, cls.version, cls.description, schema, True)
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    conn = await pg_connect(ep)
    try:
        await conn.execute(_UPSERT, *columns)
    finally:
        await conn.close()
    return len(plugins)
