"""PostgreSQL roles per service: ingest writes the data, the API and alerts only their own tables.

`unity up` connects as the database's owner; a deployment that spreads services over machines
gives each its own login role instead, so a leaked API credential cannot write or erase
history. The grants follow the tables that exist when it runs (run it again after a migration
that adds tables):

| role | reads | writes |
|---|---|---|
| ``<prefix>_ingest`` | all | the data: samples, rollups, series, events, runs, watermarks |
| ``<prefix>_api`` | all | all but the data (registry, tokens, alert rules, sessions) |
| ``<prefix>_alerts`` | all | the alert tables |

Passwords travel as query parameters and are formatted into the DDL on the server
(``format('%L')``), so they are never part of a statement's text or a log line.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

DATA_TABLES = frozenset(
    {
        "samples",
        "samples_1m",
        "samples_5m",
        "samples_1h",
        "series",
        "events",
        "plugin_runs",
        "rollup_watermarks",
    }
)
ROLES = ("ingest", "api", "alerts")


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    password: str


def writes(service: str, table: str) -> bool:
    """Whether ``service`` may change rows of ``table``."""
    if service == "ingest":
        return table in DATA_TABLES
    if service == "api":
        return table not in DATA_TABLES
    if service == "alerts":
        return table == "alerts" or table.startswith("alert_")
    raise ValueError(f"unknown service {service!r}")


_SET_ROLE = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = current_setting('unity.role_name')) THEN
    EXECUTE format('CREATE ROLE %I LOGIN', current_setting('unity.role_name'));
  END IF;
  EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', current_setting('unity.role_name'),
                 current_setting('unity.role_password'));
END $$
"""

_GRANT = """
DO $$
DECLARE
  role text := current_setting('unity.role_name');
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), role);
  EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', role);
  EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', role);
  EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', role);
END $$
"""

_WRITE = """
DO $$
BEGIN
  EXECUTE format('GRANT INSERT, UPDATE, DELETE ON TABLE %I TO %I',
                 current_setting('unity.table'), current_setting('unity.role_name'));
END $$
"""

_REVOKE = """
DO $$
BEGIN
  EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON TABLE %I FROM %I',
                 current_setting('unity.table'), current_setting('unity.role_name'));
END $$
"""

_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""


async def apply(
    conn: Any, prefix: str = "unity", passwords: dict[str, str] | None = None
) -> list[Role]:
    """Create or update the three roles and their grants in ``conn``'s database.

    Args:
        conn: An asyncpg connection as the database's owner (or a superuser).
        prefix: Role names are ``<prefix>_ingest``, ``<prefix>_api``, ``<prefix>_alerts``.
        passwords: Per service; a service without one gets a new random password.

    Returns:
        The roles with their passwords, to be handed to each service as a secret file.
    """
    passwords = passwords or {}
    tables = [row[0] for row in await conn.fetch(_TABLES)]
    roles = []
    for service in ROLES:
        role = Role(f"{prefix}_{service}", passwords.get(service) or secrets.token_urlsafe(24))
        async with conn.transaction():
            await conn.execute("SELECT set_config('unity.role_name', $1, true)", role.name)
            await conn.execute("SELECT set_config('unity.role_password', $1, true)", role.password)
            await conn.execute(_SET_ROLE)
            await conn.execute(_GRANT)
            for table in tables:
                await conn.execute("SELECT set_config('unity.table', $1, true)", table)
                await conn.execute(_WRITE if writes(service, table) else _REVOKE)
        roles.append(role)
    return roles
