"""`unity plugin run` logs in like `unity token` and `unity dlq`: the embedded stack's generated
credentials in the data folder; refused credentials end it in one line instead of retrying."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec

from tests.helpers import private_nats
from unity.compose.embedded import NatsServer
from unity.ingest.streams import ensure_streams
from unity.schemas import HealthReport
from unity.sdk.connection import connect_nats
from unity.sdk.settings import Endpoints, load_settings


async def with_streams(server: NatsServer) -> None:
    ep = Endpoints(
        f"nats://127.0.0.1:{server.port}", server.user, server.password, "", None, "", None
    )
    nc = await connect_nats(ep, "plugin-run-test")
    try:
        await ensure_streams(nc.jetstream(), load_settings(env={}))
    finally:
        await nc.close()


PLUGIN_RUN = ("plugin", "run", "cpu", "--once")


def plugin_run(data: Path, server: NatsServer, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNITY_")}
    env |= {"UNITY_NATS_PORT": str(server.port), "UNITY_HOST_NAME": "runbox", **extra}
    return subprocess.run(
        [sys.executable, "-m", "unity.compose", "--data-dir", str(data), *PLUGIN_RUN],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


async def test_plugin_run_uses_the_data_folders_credentials(tmp_path: Path) -> None:
    with private_nats() as server:
        await with_streams(server)
        (tmp_path / "secrets.json").write_text(
            json.dumps(
                {
                    "nats_user": server.user,
                    "nats_password": server.password,
                    "postgres_password": "unused",
                    "valkey_password": "unused",
                }
            )
        )
        done = await asyncio.to_thread(plugin_run, tmp_path, server)
        assert done.returncode == 0, done.stderr
        report = msgspec.json.decode(done.stdout.strip(), type=HealthReport)
        assert (report.host, report.plugin, report.status) == ("runbox", "cpu", "ok")
        refused = await asyncio.to_thread(
            functools.partial(plugin_run, tmp_path, server, UNITY_NATS_PASSWORD="wrong")
        )
    assert refused.returncode == 1
    assert refused.stdout == ""
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("cpu: nats://127.0.0.1:") and "refused the credentials" in last
    assert "wrong" not in refused.stderr
