"""Producers without the SDK: the JSON documented in sdk/README.md, published with a plain NATS
client, and the shell example, reach PostgreSQL and the API.

The nats CLI is not installable here (no Debian or PyPI package), so the shell example runs
against a stand-in ``nats`` on PATH that speaks to the real server with nats-py core requests,
taking NATS_URL / NATS_USER / NATS_PASSWORD from the environment as the real CLI does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import asyncpg
import nats
import psutil

from tests.api.conftest import running_api
from tests.helpers import running_ingest, wait_for
from tests.servers import Env
from unity.schemas.storage import DURABLE

REPO = Path(__file__).resolve().parents[2]
README = REPO / "sdk" / "README.md"
SHELL_PLUGIN = REPO / "sdk" / "examples" / "shell" / "loadavg.sh"

NATS_STANDIN = """\
import asyncio, os, sys
import nats

async def main(argv):
    if not argv or argv[0] not in ("req", "pub"):
        sys.exit("usage: nats req|pub [-H Key:Value]... SUBJECT PAYLOAD")
    verb, args, headers = argv[0], argv[1:], {}
    while args and args[0] == "-H":
        key, _, value = args[1].partition(":")
        headers[key] = value
        args = args[2:]
    subject, payload = args
    nc = await nats.connect(
        os.environ["NATS_URL"], user=os.environ.get("NATS_USER"),
        password=os.environ.get("NATS_PASSWORD"),
    )
    try:
        if verb == "pub":
            await nc.publish(subject, payload.encode(), headers=headers)
            await nc.flush()
        else:
            reply = await nc.request(subject, payload.encode(), timeout=5, headers=headers)
            print(reply.data.decode())
    finally:
        await nc.close()

asyncio.run(main(sys.argv[1:]))
"""


def readme_example() -> dict[str, Any]:
    text = README.read_text()
    block = re.search(r"<!-- plain-client-example -->\s*```json\n(.*?)```", text, re.S)
    assert block is not None, "sdk/README.md lost its plain-client example"
    example: dict[str, Any] = json.loads(block.group(1))
    return example


async def stored(env: Env, host: str, plugin: str) -> dict[str, tuple[float, str, str, str]]:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        rows = await conn.fetch(
            "SELECT s.name, v.value, s.unit, s.kind, s.labels::text AS labels FROM series s"
            " JOIN samples v ON v.series_id = s.id WHERE s.host = $1 AND s.plugin = $2",
            host,
            plugin,
        )
    finally:
        await conn.close()
    return {r["name"]: (r["value"], r["unit"], r["kind"], r["labels"]) for r in rows}


async def samples_per_series(env: Env, host: str, plugin: str) -> dict[str, int]:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        rows = await conn.fetch(
            "SELECT s.name, count(v.*) AS n FROM series s JOIN samples v ON v.series_id = s.id"
            " WHERE s.host = $1 AND s.plugin = $2 GROUP BY s.name",
            host,
            plugin,
        )
    finally:
        await conn.close()
    return {r["name"]: r["n"] for r in rows}


async def test_readme_json_published_with_a_plain_client_reaches_db_and_api(env: Env) -> None:
    example = readme_example()
    subject = f"{env.root}.metrics.{example['host']}.{example['plugin']}"
    msg_id = f"{example['host']}:{example['plugin']}::{example['seq']}"
    async with running_ingest(env):
        # Core NATS publish, no JetStream API, no SDK: the stream captures the subject.
        nc = await nats.connect(
            env.ep.nats_url, user=env.ep.nats_user, password=env.ep.nats_password
        )
        try:
            payload = json.dumps(example).encode()
            await nc.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
            await nc.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})  # a retry
            await nc.flush()
        finally:
            await nc.close()

        async def arrived() -> bool:
            return len(await stored(env, "nas", "shell-temp")) == 3

        await wait_for(arrived, within=30)
        # Before counting, ingest must have settled everything the stream holds: a retry that
        # got past the duplicate window would be stored by now.
        nc = await nats.connect(
            env.ep.nats_url, user=env.ep.nats_user, password=env.ep.nats_password
        )
        try:
            js = nc.jetstream()
            metrics_stream = env.settings.subjects.metrics_stream

            async def settled() -> bool:
                info = await js.consumer_info(metrics_stream, DURABLE)
                return bool(info.num_pending == 0 and info.num_ack_pending == 0)

            await wait_for(settled, within=30)
            in_stream = (await js.stream_info(metrics_stream)).state.messages
        finally:
            await nc.close()
        async with running_api(env) as api:
            resp = await api.get("/latest", params={"host": "nas"})
    # The retry with the same Nats-Msg-Id was dropped by JetStream: one message, one sample
    # per series.
    assert in_stream == 1
    assert await samples_per_series(env, "nas", "shell-temp") == {
        "room_temperature_celsius": 1,
        "room_humidity_percent": 1,
        "fan_rotations": 1,
    }
    rows = await stored(env, "nas", "shell-temp")
    assert rows["room_temperature_celsius"][:3] == (21.5, "celsius", "gauge")
    assert json.loads(rows["room_temperature_celsius"][3]) == {"room": "office"}
    assert rows["fan_rotations"][:3] == (123456.0, "rotations", "counter")
    assert resp.status_code == 200, resp.text
    latest = {i["name"]: i for i in resp.json()["items"] if i["plugin"] == "shell-temp"}
    assert latest["room_humidity_percent"]["value"] == 48.0
    assert latest["room_humidity_percent"]["labels"] == {"room": "office"}


async def test_shell_plugin_example_reaches_the_database(env: Env, tmp_path: Path) -> None:
    standin = tmp_path / "bin" / "nats"
    standin.parent.mkdir()
    standin.write_text(f"#!{sys.executable}\n{NATS_STANDIN}")
    standin.chmod(0o755)
    shell_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("UNITY_", "NATS_"))},
        "PATH": f"{standin.parent}{os.pathsep}{os.environ['PATH']}",
        "NATS_URL": env.ep.nats_url,
        "NATS_USER": env.ep.nats_user or "",
        "NATS_PASSWORD": env.ep.nats_password or "",
        "UNITY_SUBJECT_ROOT": env.root,
        "UNITY_HOST_NAME": "shell.box",
    }
    async with running_ingest(env):
        proc = await asyncio.create_subprocess_exec(
            "sh",
            str(SHELL_PLUGIN),
            env=shell_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        ack = json.loads(out)
        assert ack["stream"] == env.settings.subjects.metrics_stream and ack["seq"] >= 1

        async def arrived() -> bool:
            return len(await stored(env, "shell_box", "shell-loadavg")) == 4

        await wait_for(arrived, within=30)
    rows = await stored(env, "shell_box", "shell-loadavg")
    assert all(rows[name][0] >= 0 and rows[name][2] == "gauge" for name in ("load1", "load15"))
    assert rows["processes_running"][1] == "processes"
    assert 1 <= rows["processes_running"][0] <= len(psutil.pids())
