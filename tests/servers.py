"""Real nats-server, PostgreSQL and Valkey for the test session, from the same wheels as `unity up`.

Set UNITY_TEST_NATS_URL / UNITY_TEST_DATABASE_URL / UNITY_TEST_VALKEY_URL (and the matching
UNITY_TEST_*_PASSWORD) to use running servers instead, e.g. a TimescaleDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg

from unity.compose import migrate
from unity.compose.embedded import (
    EmbeddedServer,
    NatsServer,
    PostgresServer,
    ValkeyServer,
    free_port,
)
from unity.ingest import timescale
from unity.sdk.settings import Endpoints, Settings, load_settings

TEMPLATE_DB = "unity_test_template"


@dataclass(frozen=True)
class Env:
    """One test's isolated slice of the shared servers (the ``env`` fixture)."""

    settings: Settings
    ep: Endpoints
    root: str


@dataclass(frozen=True)
class TestServers:
    __test__ = False  # not a test class, whatever pytest thinks of the name
    endpoints: Endpoints  # points at the template database
    data_dir: Path

    def admin_url(self) -> str:
        return self.endpoints.database_url


def _db_url(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


async def _create_template(ep: Endpoints) -> None:
    admin = await asyncpg.connect(
        _db_url(ep.database_url, "postgres"), password=ep.database_password
    )
    try:
        await _drop_template(admin)
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        template = replace(ep, database_url=_db_url(ep.database_url, TEMPLATE_DB))
        await migrate.upgrade(template)
        await _pause_policies(template)
        # Nobody may connect to the template once it is built. On every CREATE DATABASE ...
        # TEMPLATE, TimescaleDB's loader asks its launcher for a scheduler in a template that
        # allows connections; that session waits for the copy to commit while the copy waits
        # for it to leave, and the copy fails as "being accessed by other users" (issue 22).
        await admin.execute(f'ALTER DATABASE "{TEMPLATE_DB}" IS_TEMPLATE true')
        await admin.execute(f'ALTER DATABASE "{TEMPLATE_DB}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            TEMPLATE_DB,
        )
    finally:
        await admin.close()


async def _pause_policies(ep: Endpoints) -> None:
    """On TimescaleDB, unschedule the migration's policies in the template.

    Every test database is a copy of the template, jobs included. Scheduled, the refresh,
    compression and retention policies would run at moments of their own in each copy, so
    what a test sees in rollups and chunks would depend on timing; the tests call
    ``maintain()`` instead, which does the same work when they ask for it.
    """
    conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
    try:
        if await timescale.installed(conn):
            await conn.execute(
                "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                "WHERE proc_name = ANY($1::text[])",
                list(timescale.POLICIES),
            )
    finally:
        await conn.close()


async def _drop_template(admin: asyncpg.Connection) -> None:
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", TEMPLATE_DB)
    if exists:
        await admin.execute(f'ALTER DATABASE "{TEMPLATE_DB}" IS_TEMPLATE false')
        await admin.execute(f'DROP DATABASE "{TEMPLATE_DB}" WITH (FORCE)')


def start_servers() -> Iterator[TestServers]:
    data = Path(tempfile.mkdtemp(prefix="unity-test-"))
    data.chmod(0o711)  # PostgreSQL runs as an unprivileged account when tests run as root
    env = os.environ
    servers: list[EmbeddedServer] = []
    try:
        if env.get("UNITY_TEST_NATS_URL"):
            nats = (
                env["UNITY_TEST_NATS_URL"],
                env.get("UNITY_TEST_NATS_USER"),
                env.get("UNITY_TEST_NATS_PASSWORD"),
            )
        else:
            nserver = NatsServer(data, free_port(), "unity", uuid.uuid4().hex)
            servers.append(nserver)
            nats = (f"nats://127.0.0.1:{nserver.port}", nserver.user, nserver.password)
        if env.get("UNITY_TEST_DATABASE_URL"):
            pg = (env["UNITY_TEST_DATABASE_URL"], env.get("UNITY_TEST_DATABASE_PASSWORD"))
        else:
            pserver = PostgresServer(data, free_port(), uuid.uuid4().hex, "nobody")
            servers.append(pserver)
            pg = (f"postgresql://unity@127.0.0.1:{pserver.port}/unity", pserver.password)
        if env.get("UNITY_TEST_VALKEY_URL"):
            vk = (env["UNITY_TEST_VALKEY_URL"], env.get("UNITY_TEST_VALKEY_PASSWORD"))
        else:
            vserver = ValkeyServer(data, free_port(), uuid.uuid4().hex)
            servers.append(vserver)
            vk = (f"valkey://127.0.0.1:{vserver.port}/0", vserver.password)
        for server in servers:
            server.start()
        ep = Endpoints(*nats, *pg, *vk)
        asyncio.run(_create_template(ep))
        yield TestServers(ep, data)
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(data, ignore_errors=True)


async def fresh_database(servers: TestServers, name: str) -> Endpoints:
    """A new database cloned from the migrated template: isolated and fast."""
    ep = servers.endpoints
    admin = await asyncpg.connect(
        _db_url(ep.database_url, "postgres"), password=ep.database_password
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    return replace(ep, database_url=_db_url(ep.database_url, name))


async def drop_database(servers: TestServers, name: str) -> None:
    ep = servers.endpoints
    admin = await asyncpg.connect(
        _db_url(ep.database_url, "postgres"), password=ep.database_password
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def isolated_settings(ep: Endpoints, root: str, **overrides: Any) -> Settings:
    """Settings whose subjects, streams and Valkey keys all live under ``root``."""
    return load_settings(
        env={},
        nats_url=ep.nats_url,
        database_url=ep.database_url,
        valkey_url=ep.valkey_url,
        subject_root=root,
        host_name="testhost",
        **overrides,
    )


async def drop_root(ep: Endpoints, settings: Settings) -> None:
    """Delete one test's streams and Valkey keys (matters when the servers are shared)."""
    from nats.js.errors import NotFoundError

    from unity.sdk.connection import connect_nats, valkey_client

    nc = await connect_nats(ep, "unity-tests")
    try:
        js = nc.jetstream()
        subjects = settings.subjects
        kv_stream = f"KV_{subjects.config_bucket}"  # the plugin-config KV bucket's stream
        for stream in (
            subjects.metrics_stream,
            subjects.events_stream,
            subjects.dlq_stream,
            kv_stream,
        ):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
    finally:
        await nc.close()
    client = valkey_client(ep)
    try:
        keys = [k async for k in client.scan_iter(match=f"{settings.subject_root}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
