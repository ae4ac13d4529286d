"""Per-service PostgreSQL roles: ingest writes the data, the API cannot; the API writes its
registry and tokens, ingest cannot."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.servers import Env
from unity.compose import dbroles
from unity.compose.cli import main as unity


@pytest.fixture
async def prefix(env: Env) -> AsyncIterator[str]:
    name = f"r{uuid.uuid4().hex[:10]}"
    yield name
    admin = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        for service in dbroles.ROLES:
            role = f"{name}_{service}"
            if await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                await admin.execute(f'DROP OWNED BY "{role}"')
                await admin.execute(f'DROP ROLE "{role}"')
    finally:
        await admin.close()


async def _as(env: Env, role: str, password: str) -> asyncpg.Connection:
    return await asyncpg.connect(env.ep.database_url, user=role, password=password)


INSERT_SAMPLE = "INSERT INTO samples (series_id, time, value) VALUES ($1, now(), 1)"
INSERT_TOKEN = (
    "INSERT INTO api_tokens (name, prefix, token_hash, scopes) VALUES ($1, 'x', $2, '{read}')"
)


async def test_each_service_writes_only_its_own_tables(
    env: Env, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNITY_DATABASE_URL", env.ep.database_url)
    monkeypatch.setenv("UNITY_DATABASE_PASSWORD", env.ep.database_password or "")
    monkeypatch.setenv("UNITY_NATS_URL", env.ep.nats_url)
    monkeypatch.setenv("UNITY_VALKEY_URL", env.ep.valkey_url)
    out = tmp_path / "secrets"
    roles_cmd = ["--data-dir", str(tmp_path), "db", "roles"]
    assert await asyncio.to_thread(unity, [*roles_cmd, "--prefix", prefix, "--out", str(out)]) == 0
    password = {s: (out / f"{prefix}_{s}.password").read_text().strip() for s in dbroles.ROLES}
    for s in dbroles.ROLES:
        assert (out / f"{prefix}_{s}.password").stat().st_mode & 0o777 == 0o600
    admin = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        series = await admin.fetchval(
            "INSERT INTO series (host, plugin, instance, name, labels, unit, kind)"
            " VALUES ('h', 'p', '', 'm', '{}', '', 'gauge') RETURNING id"
        )
    finally:
        await admin.close()

    api = await _as(env, f"{prefix}_api", password["api"])
    try:
        assert await api.fetchval("SELECT count(*) FROM samples") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await api.execute(INSERT_SAMPLE, series)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await api.execute("DELETE FROM series")
        await api.execute(INSERT_TOKEN, "t1", b"h1")
    finally:
        await api.close()

    ingest = await _as(env, f"{prefix}_ingest", password["ingest"])
    try:
        await ingest.execute(INSERT_SAMPLE, series)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await ingest.execute(INSERT_TOKEN, "t2", b"h2")
    finally:
        await ingest.close()

    alerts = await _as(env, f"{prefix}_alerts", password["alerts"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await alerts.execute(INSERT_SAMPLE, series)
    finally:
        await alerts.close()

    # Run again: the same passwords are kept (read from the files), so running services
    # keep working after a migration added tables.
    assert await asyncio.to_thread(unity, [*roles_cmd, "--prefix", prefix, "--out", str(out)]) == 0
    again = await _as(env, f"{prefix}_api", password["api"])
    await again.close()
