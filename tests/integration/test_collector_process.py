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
from nats.js.errors import BucketNotFoundError, NotFoundError

from compose.cli import main
from compose.connect import connect_nats
from ingest.streams import ensure_streams
from schemas import HealthReport, MetricBatch
from tests.conftest import Env

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
    lines = [msgspec.json.decode(line) for line in capsys.readouterr().out.splitlines()]
    batches = {(m["plugin"], m.get("instance", "")) for m in lines if "samples" in m}
    assert batches == {("cpu", ""), ("disk", "root"), ("system", ""), ("unity-collector", "")}
    assert all(m["host"] == "proc-test" for m in lines)
    health = [m for m in lines if "status" in m]
    assert {h["status"] for h in health} == {"ok"} and len(health) == 4
    assert any(m.get("kind") == "os_info" for m in lines)
    disk = next(m for m in lines if m["plugin"] == "disk" and "samples" in m)
    assert {s["labels"]["mount"] for s in disk["samples"]} == {"/"}
    assert not (tmp_path / "spool").exists(), "--once touches no spool"


def test_a_config_error_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text("[[plugins.cpu]]\npercpu = 'yes'\n")
    with pytest.raises(SystemExit, match=r"plugins.cpu.percpu: Expected `bool`"):
        main(["collector", "--config", str(path), "--once"])


async def test_sigterm_finishes_flushes_and_exits(env: Env, tmp_path: Path) -> None:
    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    await ensure_streams(js, env.settings)
    path = tmp_path / "collector.toml"
    path.write_text(CONFIG.format(spool=tmp_path / "spool"))
    ep = env.ep
    environ = {
        **os.environ,
        "UNITY_NATS_URL": ep.nats_url,
        "UNITY_NATS_USER": ep.nats_user or "",
        "UNITY_NATS_PASSWORD": ep.nats_password or "",
        "UNITY_DATABASE_URL": ep.database_url,
        "UNITY_VALKEY_URL": ep.valkey_url,
        "UNITY_SUBJECT_ROOT": env.root,
        "UNITY_DATA_DIR": str(tmp_path / "data"),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "compose",
        "collector",
        "--config",
        str(path),
        env=environ,
        stderr=asyncio.subprocess.PIPE,
    )
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
