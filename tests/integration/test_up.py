"""`unity up` as a user runs it: a subprocess on a temp data folder, stopped by signals."""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import asyncpg
import psutil
import pytest

from tests.integration.up_support import Up, fresh_up
from tests.servers import (
    TestServers,
    drop_database,
    drop_root,
    fresh_database,
    isolated_settings,
)
from unity.compose.stack import SERVICES

pytestmark = pytest.mark.slow


@pytest.fixture
def up() -> Iterator[Up]:
    yield from fresh_up()


def _descendants(pid: int) -> list[psutil.Process]:
    children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    return children


def test_up_serves_latest_and_history_then_stops_every_child_on_sigint(up: Up) -> None:
    started = time.monotonic()
    proc = up.start()
    body = up.wait_for_plugins()
    elapsed = time.monotonic() - started
    assert body["source"] == "valkey"
    print(f"cpu and memory visible in /latest {elapsed:.1f}s after start")

    history = up.get("/query", host="e2e-host", name="memory_total_bytes").json()
    assert history["series"] and history["series"][0]["points"]
    _assert_cpu_history(up)

    children = _descendants(proc.pid)
    names = {c.name() for c in children}
    assert {"nats-server", "postgres", "valkey-server"} <= names, names
    services = [c.cmdline()[-1] for c in children if "unity.compose" in c.cmdline()]
    assert sorted(services) == sorted(SERVICES)

    # A second `up` on the same data folder is turned away and touches nothing of the first.
    second = subprocess.run(
        [sys.executable, "-m", "unity.compose", "up"],
        env=up.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"unity up: another `unity up` is running on {up.data.resolve()}"
    ], second.stderr
    assert all(c.is_running() for c in children)
    assert up.get("/latest", host="e2e-host").status_code == 200

    proc.send_signal(signal.SIGINT)
    assert proc.wait(90) == 0, up.output()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"still running after SIGINT: {alive}"
    assert not list((up.data / "run").glob("*.pid"))


def _assert_cpu_history(up: Up) -> None:
    history = up.get("/query", host="e2e-host", name="cpu_time_seconds").json()
    series = history["series"]
    assert series, history
    assert {(s["host"], s["plugin"]) for s in series} == {("e2e-host", "cpu")}
    assert {s["labels"].get("mode") for s in series} >= {"user", "system", "idle"}
    values = [value for s in series for _, value in s["points"]]
    assert values
    assert all(isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in values)


def test_up_with_a_taken_port_stops_with_one_line_naming_it(up: Up) -> None:
    port = int(up.env["UNITY_NATS_PORT"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        proc = up.start()
        code = proc.wait(60)
    output = up.output()
    assert code == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("unity up:")]
    assert len(errors) == 1, output
    assert f"127.0.0.1:{port}" in errors[0] and "UNITY_NATS_PORT" in errors[0]


def test_up_recovers_after_sigkill_and_keeps_the_data(up: Up) -> None:
    proc = up.start()
    up.wait_for_plugins()
    before = up.get("/query", host="e2e-host", name="memory_total_bytes").json()["series"][0][
        "points"
    ]
    children = _descendants(proc.pid)
    proc.kill()
    proc.wait()

    proc = up.start()
    up.wait_for_plugins()
    # The first run's children are gone: ended with their parent or stopped by the new run.
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"processes of the killed run still alive: {alive}"
    deadline = time.monotonic() + 30
    after: list[list[float]] = []
    while time.monotonic() < deadline:
        after = up.get("/query", host="e2e-host", name="memory_total_bytes").json()["series"][0][
            "points"
        ]
        if len(after) > len(before):
            break
        time.sleep(0.5)
    # Two pullers may commit batches out of time order, so compare as sets: every point stored
    # before the SIGKILL is still there, and the restarted pipeline added new ones.
    assert {p[0] for p in before} <= {p[0] for p in after}
    assert len(after) > len(before)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == 0, up.output()


async def test_up_uses_existing_servers_given_by_url(up: Up, servers: TestServers) -> None:
    name = f"ext{uuid.uuid4().hex[:10]}"
    ep = await fresh_database(servers, name)
    up.env.update(
        UNITY_NATS_URL=ep.nats_url,
        UNITY_NATS_USER=ep.nats_user or "",
        UNITY_NATS_PASSWORD=ep.nats_password or "",
        UNITY_DATABASE_URL=ep.database_url,
        UNITY_DATABASE_PASSWORD=ep.database_password or "",
        UNITY_VALKEY_URL=ep.valkey_url,
        UNITY_VALKEY_PASSWORD=ep.valkey_password or "",
        UNITY_SUBJECT_ROOT=name,
    )
    try:
        proc = up.start()
        await asyncio.to_thread(up.wait_for_plugins)
        children = _descendants(proc.pid)
        assert {c.name() for c in children} & {"nats-server", "postgres", "valkey-server"} == set()
        assert not (up.data / "secrets.json").exists()
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 90) == 0, up.output()
    finally:
        await drop_root(ep, isolated_settings(ep, name))
        await drop_database(servers, name)


async def test_up_with_only_postgres_given_by_url_runs_nats_and_valkey_itself(
    up: Up, servers: TestServers
) -> None:
    name = f"ext{uuid.uuid4().hex[:10]}"
    ep = await fresh_database(servers, name)
    up.env.update(
        UNITY_DATABASE_URL=ep.database_url,
        UNITY_DATABASE_PASSWORD=ep.database_password or "",
    )
    try:
        proc = up.start()
        await asyncio.to_thread(up.wait_for_plugins)
        names = {c.name() for c in _descendants(proc.pid)}
        assert {"nats-server", "valkey-server"} <= names and "postgres" not in names, names
        assert (up.data / "secrets.json").exists() and not (up.data / "postgres").exists()
        # The samples went into the external database.
        conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
        try:
            stored = await conn.fetch(
                "SELECT s.plugin, count(*) AS n FROM samples JOIN series s ON s.id = series_id"
                " WHERE s.host = $1 GROUP BY s.plugin",
                "e2e-host",
            )
        finally:
            await conn.close()
        assert {r["plugin"] for r in stored} >= {"cpu", "memory"}
        assert all(r["n"] > 0 for r in stored)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 90) == 0, up.output()
    finally:
        await drop_database(servers, name)
