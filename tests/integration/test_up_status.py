"""`unity status` on a running and a broken stack; one-shot commands with the pipeline down."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.integration.up_support import Up, fresh_up
from unity.compose.embedded import free_port


@pytest.fixture
def up() -> Iterator[Up]:
    yield from fresh_up()


def _unity(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unity.compose", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a command that retries forever fails here
        check=False,
    )


def _down_env(tmp_path: Path) -> dict[str, str]:
    """Settings of a Unity whose servers are not running (nothing listens on its ports)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNITY_")}
    env.update(
        UNITY_DATA_DIR=str(tmp_path / "data"),
        UNITY_NATS_PORT=str(free_port()),
        UNITY_POSTGRES_PORT=str(free_port()),
        UNITY_VALKEY_PORT=str(free_port()),
        UNITY_API_PORT=str(free_port()),
    )
    return env


@pytest.mark.parametrize(
    ("args", "server"),
    [(("token", "list"), "PostgreSQL"), (("dlq", "list"), "NATS")],
)
def test_one_shot_commands_with_the_pipeline_down_say_so_in_one_line(
    tmp_path: Path, args: tuple[str, ...], server: str
) -> None:
    result = _unity(_down_env(tmp_path), *args)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"unity {args[0]}: cannot reach {server} at ")
    assert "ConnectionRefusedError" in lines[0] and "unity up" in lines[0]


def test_status_before_any_start_changes_nothing(tmp_path: Path) -> None:
    env = _down_env(tmp_path)
    result = _unity(env, "status")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"unity status: no `unity up` has run on {tmp_path / 'data'}; start one there, "
        "or point --data-dir (UNITY_DATA_DIR) at the folder it uses"
    ]
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_status_of_a_running_stack_then_of_one_with_a_service_down(up: Up) -> None:
    proc = up.start()
    up.wait_for_plugins()

    result = _unity(up.env, "status")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"(unity up: pid {proc.pid})" in out
    assert f"API        {up.url}  ok" in out
    children = {c.pid: c for c in psutil.Process(proc.pid).children()}
    for name in ("nats", "postgres", "valkey", "ingest", "api", "collector", "maintain"):
        found = re.search(rf"^  {name}\s+pid (\d+)\s+up ", out, re.M)
        assert found, f"{name} missing:\n{out}"
        assert int(found[1]) in children
    assert re.search(r"^  lag        \S+_METRICS: \d+ waiting, \d+ in progress$", out, re.M), out
    assert re.search(r"^  DLQ        0 messages$", out, re.M), out
    assert re.search(r"^  storage    PostgreSQL [\d.]+ MiB, streams [\d.]+ \w+, data", out, re.M)
    assert re.search(r"^    e2e-host\s+\S+  \(\d+s ago\)$", out, re.M), out
    assert "problem:" not in out

    # Freeze the supervisor so it cannot restart what we stop, then stop the collector.
    collector = next(c for c in children.values() if c.cmdline()[-1] == "collector")
    proc.send_signal(signal.SIGSTOP)
    try:
        collector.terminate()
        # Its parent is frozen, so it stays a zombie until SIGCONT: wait for that, or its end.
        for _ in range(300):
            if not collector.is_running() or collector.status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.1)
        down = _unity(up.env, "status")
    finally:
        proc.send_signal(signal.SIGCONT)
    assert down.returncode == 1, down.stdout
    assert re.search(r"^  collector  not running$", down.stdout, re.M), down.stdout
    assert "problem: collector is not running" in down.stdout

    # `unity down` stops it as Ctrl-C would, and returns once it has stopped.
    down_cmd = subprocess.run(
        [sys.executable, "-m", "unity.compose", "down"],
        env=up.env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert down_cmd.returncode == 0, down_cmd.stderr
    assert f"stopped `unity up` (pid {proc.pid})" in down_cmd.stdout
    assert proc.wait(10) == 0, up.output()
    stopped = _unity(up.env, "status")
    assert stopped.returncode == 1
    assert f"problem: `unity up` is not running on {up.data.resolve()}" in stopped.stdout
