"""valkey against the test stack's Valkey, plus a replica of it started by the test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey

from tests.collectors.helpers import by_key, collect, key
from tests.servers import TestServers
from unity.collectors.plugins.valkey import ValkeyPlugin, parse_info
from unity.compose.embedded import ValkeyServer, free_port
from unity.sdk import ConfigError
from unity.sdk.testing import run


def address(servers: TestServers) -> str:
    return servers.endpoints.valkey_url.split("//", 1)[1].split("/", 1)[0]


def plugin(*servers: dict[str, Any]) -> ValkeyPlugin:
    return ValkeyPlugin(ValkeyPlugin.parse_config({"servers": list(servers)}))


@pytest.fixture
def client(servers: TestServers) -> Iterator[valkey.Valkey]:
    c = valkey.Valkey.from_url(
        servers.endpoints.valkey_url.replace("/0", "/9"),
        password=servers.endpoints.valkey_password,
    )
    c.flushdb()
    yield c
    c.flushdb()
    c.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def replica(servers: TestServers, tmp_path: Path) -> Iterator[ValkeyServer]:
    password = uuid.uuid4().hex
    server = ValkeyServer(tmp_path, free_port(), password)
    server.start()
    c = valkey.Valkey(port=server.port, password=password)
    host, port = address(servers).split(":")
    c.config_set("masterauth", servers.endpoints.valkey_password or "")
    c.execute_command("REPLICAOF", host, port)  # type: ignore[no-untyped-call]
    c.close()  # type: ignore[no-untyped-call]
    yield server
    server.stop()


def test_keyspace_memory_counters_and_role(
    servers: TestServers, client: valkey.Valkey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VK_PASSWORD", servers.endpoints.valkey_password or "")
    client.set("a", "1")
    client.set("b", "2", ex=600)
    client.set("c", "3")
    client.get("a")
    client.get("missing")
    p = plugin(
        {"url": f"valkey://{address(servers)}", "name": "cache", "password_env": "VK_PASSWORD"}
    )
    found = by_key(collect(p))
    db = {"server": "cache", "db": "db9"}
    assert found[key("valkey_keys", **db)] == 3.0
    assert found[key("valkey_keys_expiring", **db)] == 1.0
    base = {"server": "cache"}
    assert found[key("valkey_connected_clients", **base)] >= 2
    assert found[key("valkey_memory_used_bytes", **base)] > 0
    assert found[key("valkey_keyspace_hits_total", **base)] >= 1
    assert found[key("valkey_keyspace_misses_total", **base)] >= 1
    assert 0 < found[key("valkey_hit_ratio_percent", **base)] < 100
    assert found[key("valkey_commands_processed_total", **base)] >= 7
    assert found[key("valkey_aof_enabled", **base)] == 1.0
    assert found[key("valkey_rdb_last_bgsave_ok", **base)] == 1.0
    assert found[key("valkey_is_replica", **base)] == 0.0


def test_keyspace_lines_are_parsed_from_the_servers_text(
    servers: TestServers, client: valkey.Valkey
) -> None:
    client.set("k", "v", ex=100)
    raw = client.execute_command("INFO", "keyspace")  # type: ignore[no-untyped-call]
    # The client library already turned the keyspace into dicts: the pitfall the plugin avoids.
    assert isinstance(raw, dict) and isinstance(raw["db9"], dict)
    text = "# Keyspace\r\ndb9:keys=1,expires=1,avg_ttl=99000,subexpiry=0\r\n"
    fields, keyspace = parse_info(text)
    assert fields == {}
    assert keyspace == {"db9": {"keys": "1", "expires": "1", "avg_ttl": "99000", "subexpiry": "0"}}


def test_a_replica_and_its_primary_report_replication(
    servers: TestServers, replica: ValkeyServer, client: valkey.Valkey, tmp_path: Path
) -> None:
    secret = tmp_path / "replica.secret"
    secret.write_text(replica.password + "\n")
    p = plugin(
        {
            "url": f"valkey://{address(servers)}",
            "name": "primary",
            "password_env": "UNSET_VK",
            "password_file": "",
        },
        {
            "url": f"redis://127.0.0.1:{replica.port}",
            "name": "replica",
            "password_file": str(secret),
        },
    )
    primary_password = servers.endpoints.valkey_password or ""
    found: dict[Any, float] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNSET_VK", primary_password)
        for _ in range(100):
            found = by_key(collect(p))
            if found.get(key("valkey_master_link_up", server="replica")) == 1.0:
                break
            time.sleep(0.1)
    assert found[key("valkey_is_replica", server="replica")] == 1.0
    assert found[key("valkey_master_link_up", server="replica")] == 1.0
    assert found[key("valkey_replication_lag_bytes", server="replica")] >= 0
    assert found[key("valkey_connected_replicas", server="primary")] >= 1
    lags = [k for k in found if k[0] == "valkey_replica_lag_seconds"]
    assert any(dict(labels)["replica"].endswith(f":{replica.port}") for _, labels in lags)


async def test_wrong_password_and_a_dead_server() -> None:
    result = await run(plugin({"url": "valkey://127.0.0.1:1"}))
    assert result.report.status == "error"
    assert "127.0.0.1:1: ConnectionError" in result.report.message


async def test_one_of_two_down_is_degraded(servers: TestServers) -> None:
    secret_env = "VK_TEST_PW"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(secret_env, servers.endpoints.valkey_password or "")
        result = await run(
            plugin(
                {"url": f"valkey://{address(servers)}", "password_env": secret_env},
                {"url": f"valkey://{address(servers)}", "name": "nopass"},
            )
        )
    assert result.report.status == "degraded"
    assert result.report.message.startswith("nopass: AuthenticationError")
    assert result.batch is not None


def test_a_password_in_the_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not hold a password"):
        ValkeyPlugin.parse_config({"servers": [{"url": "redis://:pw@host:6379"}]})
    assert ValkeyPlugin().unavailable() == "no servers configured"
