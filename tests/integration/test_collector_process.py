"""`unity collector` as a process: --once prints what it would publish; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError

from tests.helpers import wait_for
from tests.servers import Env
from unity.collectors.runtime.config import parse_config
from unity.collectors.runtime.runner import Collector
from unity.collectors.runtime.spool import DiskSpool
from unity.compose.cli import main
from unity.compose.embedded import free_port
from unity.ingest.streams import ensure_streams
from unity.schemas import HealthReport, MetricBatch
from unity.sdk.connection import connect_nats
from unity.sdk.discovery import discover

CONFIG = """
[agent]
host = "proc-test"
interval = "1s"
spool_dir = "{spool}"

[[plugins.cpu]]
percpu = false

[[plugins.disk]]
instance = "root"
mounts = ["/"]

[[plugins.system]]
"""


def test_once_prints_batches_events_and_health_without_nats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(CONFIG.format(spool=tmp_path / "spool"))
    assert main(["collector", "--config", str(path), "--once"]) == 0
    envelopes = [msgspec.json.decode(line) for line in capsys.readouterr().out.splitlines()]
    lines = [e["message"] for e in envelopes]
    # Each line says where it would go and under which Msg-Id.
    for e in envelopes:
        m = e["message"]
        kind = "health" if "status" in m else "metrics" if "samples" in m else "events"
        assert e["subject"] == f"unity.{kind}.proc-test.{m['plugin']}"
        instance = m.get("instance", "")
        assert e["msg_id"].startswith(f"proc-test:{m['plugin']}:{instance}:")
    ids = [e["msg_id"] for e in envelopes]
    assert len(set(ids)) == len(ids)
    assert sum(i.endswith(":health") for i in ids) == 4
    batches = {
        (e["message"]["plugin"], e["message"].get("instance", ""))
        for e in envelopes
        if ".metrics." in e["subject"]
    }
    assert batches == {("cpu", ""), ("disk", "root"), ("system", ""), ("unity-collector", "")}
    assert all(m["host"] == "proc-test" for m in lines)
    health = [e["message"] for e in envelopes if ".health." in e["subject"]]
    assert {h["status"] for h in health} == {"ok"} and len(health) == 4
    assert any(m.get("kind") == "os_info" for m in lines)
    disk = next(m for m in lines if m["plugin"] == "disk" and "status" not in m)
    assert {s["labels"]["mount"] for s in disk["samples"]} == {"/"}
    assert not (tmp_path / "spool").exists(), "--once touches no spool"


def test_a_spool_in_use_by_another_collector_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    path = tmp_path / "collector.toml"
    path.write_text(CONFIG.format(spool=spool))
    for name, value in {
        "UNITY_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "UNITY_DATABASE_URL": "postgresql://unity@127.0.0.1:1/unity",
        "UNITY_VALKEY_URL": "valkey://127.0.0.1:1/0",
        "UNITY_DATA_DIR": str(tmp_path / "data"),
    }.items():
        monkeypatch.setenv(name, value)
    first = DiskSpool(spool, max_bytes=1000)
    first.open()
    try:
        with pytest.raises(SystemExit, match=r"unity collector: spool folder .* is in use"):
            main(["collector", "--config", str(path)])
    finally:
        first.close()


def test_a_config_error_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text("[[plugins.cpu]]\npercpu = 'yes'\n")
    with pytest.raises(SystemExit, match=r"plugins.cpu.percpu: Expected `bool`"):
        main(["collector", "--config", str(path), "--once"])


def collector_environ(env: Env, tmp_path: Path, nats_url: str) -> dict[str, str]:
    ep = env.ep
    return {
        **os.environ,
        "UNITY_NATS_URL": nats_url,
        "UNITY_NATS_USER": ep.nats_user or "",
        "UNITY_NATS_PASSWORD": ep.nats_password or "",
        "UNITY_DATABASE_URL": ep.database_url,
        "UNITY_VALKEY_URL": ep.valkey_url,
        "UNITY_SUBJECT_ROOT": env.root,
        "UNITY_DATA_DIR": str(tmp_path / "data"),
    }


async def start_collector(config: Path, environ: dict[str, str]) -> asyncio.subprocess.Process:
    """``unity collector --config`` as a child, its stderr piped for the test to read."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "unity.compose",
        "collector",
        "--config",
        str(config),
        env=environ,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_sigterm_finishes_flushes_and_exits(env: Env, tmp_path: Path) -> None:
    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    await ensure_streams(js, env.settings)
    path = tmp_path / "collector.toml"
    path.write_text(CONFIG.format(spool=tmp_path / "spool"))
    proc = await start_collector(path, collector_environ(env, tmp_path, env.ep.nats_url))
    assert proc.stderr is not None
    stderr = asyncio.create_task(proc.stderr.read())
    try:
        subjects = env.settings.subjects
        sub = await js.subscribe(f"{env.root}.health.proc-test.>", ordered_consumer=True)
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while seen != {"cpu", "disk", "system"} and time.monotonic() < deadline:
            with_timeout = await sub.next_msg(timeout=30)
            report = msgspec.json.decode(with_timeout.data, type=HealthReport)
            if report.plugin != "unity-collector":
                assert report.status == "ok", report.message
                seen.add(report.plugin)
        assert seen == {"cpu", "disk", "system"}
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0
        assert "Traceback" not in (await stderr).decode()
        # Everything it collected went out before it exited: nothing left in the spool.
        assert not list((tmp_path / "spool").glob("*.msg"))
        info = await js.stream_info(subjects.metrics_stream)
        assert info.state.messages >= 3
        last = await js.get_last_msg(subjects.metrics_stream, subjects.metrics("proc-test", "cpu"))
        batch = msgspec.json.decode(last.data or b"", type=MetricBatch)
        assert batch.host == "proc-test" and batch.samples
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        # The collector created the registry's config bucket; the servers are shared.
        with contextlib.suppress(NotFoundError, BucketNotFoundError):
            await js.delete_key_value(env.settings.subjects.config_bucket)
        await nc.close()


SPOOLED = """
[agent]
host = "{host}"
interval = "1s"
spool_dir = "{spool}"
self_metrics = false
watch_config = false

[[plugins.memory]]
"""


async def msg_ids(js: JetStreamContext, subject: str) -> list[str]:
    sub = await js.subscribe(subject, ordered_consumer=True)
    found: list[str] = []
    with contextlib.suppress(TimeoutError):
        while True:
            msg = await sub.next_msg(timeout=2)
            found.append((msg.headers or {})["Nats-Msg-Id"])
    await sub.unsubscribe()
    return found


def spooled_ids(spool: Path) -> list[str]:
    """The Msg-Ids of the spool's files, oldest first (each file starts with a JSON header)."""
    ids = []
    for path in sorted(spool.glob("*.msg")):
        header = path.read_bytes().partition(b"\n")[0]
        ids.append(msgspec.json.decode(header)["msg_id"])
    return ids


async def test_sigterm_with_nats_down_keeps_everything_in_the_spool_for_the_next_start(
    env: Env, tmp_path: Path
) -> None:
    host = f"sigterm-{os.getpid()}"
    spool = tmp_path / "spool"
    path = tmp_path / "collector.toml"
    path.write_text(SPOOLED.format(host=host, spool=spool))
    nowhere = f"nats://127.0.0.1:{free_port()}"  # nothing listens: NATS is down all along
    proc = await start_collector(path, collector_environ(env, tmp_path, nowhere))
    assert proc.stderr is not None
    stderr = asyncio.create_task(proc.stderr.read())
    try:

        async def runs_spooled() -> bool:
            return len(list(spool.glob("*.msg"))) >= 6  # three runs: a batch and a report each

        await wait_for(runs_spooled, within=30)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0
    assert "Traceback" not in (await stderr).decode()
    ids = spooled_ids(spool)
    # Every run up to the stop is on disk: consecutive ticks, each with its health report.
    batches = [i for i in ids if not i.endswith(":health")]
    assert [f"{i}:health" for i in batches] == [i for i in ids if i.endswith(":health")]
    ticks = [round(int(i.rsplit(":", 1)[1]) / 1000) for i in batches]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))

    # The next start on that spool, with NATS up, sends them first, each once.
    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    await ensure_streams(js, env.settings)
    raw = {
        "agent": {
            "host": host,
            "spool_dir": str(spool),
            "self_metrics": False,
            "watch_config": False,
        },
        "plugins": {"memory": {}},
    }
    restarted = Collector(env.settings, env.ep, config=parse_config(raw, discover(), host))
    await restarted.start()  # not run(): it only sends what the spool holds

    async def drained() -> bool:
        return len(restarted.outbox) == 0 and restarted.sender.stats.published >= len(ids)

    try:
        await wait_for(drained)
    finally:
        await restarted.stop(flush_timeout=5)
    assert not list(spool.glob("*.msg"))
    subjects = env.settings.subjects
    arrived = [
        await msg_ids(js, subjects.metrics(host, "memory")),
        await msg_ids(js, subjects.health(host, "memory")),
    ]
    await nc.close()
    assert arrived == [batches, [i for i in ids if i.endswith(":health")]]
