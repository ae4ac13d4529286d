"""The production compose as far as this machine can run it: the file is valid Compose, its
settings and command lines are Unity's own, and its nats.conf forms a real three-node TLS cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import tomllib
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import nats
import pytest
import yaml
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig

from tests.cluster import PRODUCTION, NatsCluster
from unity.collectors.runtime.config import parse_config
from unity.compose.cli import _commands, _parser
from unity.sdk.discovery import discover
from unity.sdk.settings import Settings

# Environment keys a Unity process reads besides the Settings fields.
CREDENTIAL_KEYS = {
    "UNITY_NATS_USER",
    "UNITY_NATS_PASSWORD",
    "UNITY_DATABASE_PASSWORD",
    "UNITY_VALKEY_PASSWORD",
}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PRODUCTION / "compose.yml").read_text())
    return loaded


def _unity_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("image", "").startswith("unity-telemetry")
    }


def test_compose_file_is_valid_compose() -> None:
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(_compose(), schema)
    # The validator really looks: a misspelt key is refused.
    broken = _compose()
    broken["services"]["nats-1"]["restarts"] = "always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_compose_services_run_unity_commands_with_known_settings() -> None:
    compose = _compose()
    services = _unity_services(compose)
    assert {"ingest", "api", "alerts", "maintain", "migrate", "collector"} <= set(services)
    assert services["ingest"]["deploy"]["replicas"] == 2
    assert services["api"]["deploy"]["replicas"] == 2
    parser = _parser(_commands())
    fields = {f"UNITY_{name.upper()}" for name in Settings.__struct_fields__}
    for name, svc in services.items():
        parser.parse_args(svc["command"])  # exits (SystemExit) on an unknown command or flag
        for key in svc["environment"]:
            if key.startswith("UNITY_"):
                plain = key.removesuffix("_FILE")
                assert key in fields or plain in CREDENTIAL_KEYS, f"{name}: unknown {key}"
        for value in svc["environment"].values():
            assert "password=" not in str(value).lower(), f"{name}: a secret in a value"


def test_collector_config_of_the_compose_is_valid() -> None:
    raw = tomllib.loads((PRODUCTION / "collector.toml").read_text())
    config = parse_config(raw, discover(), "nas")
    roots = {spec.plugin: spec.config for spec in config.plugins}
    assert {"cpu", "memory", "disk", "diskio", "net", "system"} <= set(roots)
    for spec in config.plugins:
        assert getattr(spec.config, "proc_root", "/host/proc") == "/host/proc", spec.plugin


@contextlib.contextmanager
def _cluster(tmp: Path, users: str) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp, users)
    cluster.start_all()
    try:
        yield cluster
    finally:
        cluster.stop_all()


def _tls(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@contextlib.asynccontextmanager
async def _connected(port: int, **kwargs: Any) -> AsyncIterator[NATS]:
    nc = await nats.connect(
        f"tls://127.0.0.1:{port}",
        allow_reconnect=False,
        connect_timeout=2,
        max_reconnect_attempts=0,
        **kwargs,
    )
    try:
        yield nc
    finally:
        await nc.close()


async def test_production_nats_conf_forms_a_tls_cluster_with_r3_streams(tmp_path: Path) -> None:
    users = 'users: [\n  {user: admin, password: "s3cret-admin"}\n]\n'
    with _cluster(tmp_path, users) as cluster:
        ports = cluster.client_ports
        ca = tmp_path / "certs" / "ca.crt"
        auth = {"user": "admin", "password": "s3cret-admin", "tls": _tls(ca)}
        created = False
        for _ in range(60):  # the meta group elects a leader once all three routes are up
            try:
                async with _connected(ports[0], **auth) as nc:
                    js = nc.jetstream()
                    await js.add_stream(
                        StreamConfig(name="PROD_TEST", subjects=["prod.>"], num_replicas=3)
                    )
                    created = True
                    break
            except Exception:  # not formed yet; the log says why if it never is
                await asyncio.sleep(0.5)
        assert created, cluster.logs()
        # Published on one node with a PubAck, read back on another: replicated.
        async with _connected(ports[1], **auth) as nc:
            ack = await nc.jetstream().publish("prod.a", b"one")
            assert ack.stream == "PROD_TEST"
        async with _connected(ports[2], **auth) as nc:
            info = await nc.jetstream().stream_info("PROD_TEST")
            assert info.state.messages == 1
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        # Without TLS, or without credentials, a client is turned away.
        with pytest.raises(Exception):  # noqa: B017, PT011 - nats-py raises several kinds
            await nats.connect(
                f"nats://127.0.0.1:{ports[0]}",
                user="admin",
                password="s3cret-admin",
                allow_reconnect=False,
                connect_timeout=2,
            )
        with pytest.raises(Exception):  # noqa: B017, PT011
            async with _connected(ports[0], tls=_tls(ca)):
                pass
