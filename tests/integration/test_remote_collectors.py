"""One hub, two machines: `unity up --listen` lets a second collector in over TLS with a login
of its own, printed by `unity collector add`; both hosts' data land in /latest."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest

from tests.integration.up_support import Up, fresh_up

pytestmark = pytest.mark.slow

# A second loopback address: not 127.0.0.1, so the hub's NATS is reached over a listener that
# is not the default one, as another machine would reach it.
LISTEN = "127.0.0.2"


@pytest.fixture
def up() -> Iterator[Up]:
    yield from fresh_up()


def _unity(up: Up, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unity.compose", *args],
        env=up.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _hosts(up: Up) -> set[str]:
    resp = up.get("/latest")
    if resp.status_code != 200:
        return set()
    return {item["host"] for item in resp.json()["items"]}


def _remote_env(home: Path) -> dict[str, str]:
    """The other machine: its own HOME, none of the hub's settings, `unity` on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNITY_")}
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["UNITY_COLLECT_INTERVAL"] = "1"
    return env


def test_refused_without_a_listener(up: Up) -> None:
    up.data.mkdir(parents=True)
    added = _unity(up, "collector", "add", "nas")
    assert added.returncode == 1
    assert added.stderr.splitlines() == [
        "unity collector add: the hub's NATS listens on loopback only: start it with "
        "`unity up --listen ADDR` (or set UNITY_NATS_LISTEN), then add collectors"
    ]


def test_a_second_machine_feeds_the_hub_over_tls_with_its_own_login(up: Up, tmp_path: Path) -> None:
    proc = up.start("--listen", LISTEN)
    up.wait_for_plugins()
    port = up.env["UNITY_NATS_PORT"]
    assert f"remote:    collectors of other machines connect to tls://{LISTEN}:{port}" in (
        up.output()
    )

    added = _unity(up, "collector", "add", "nas-remote")
    assert added.returncode == 0, added.stderr
    line = added.stdout.splitlines()[-1]
    assert "the running hub took it" in added.stdout
    password = (up.data / "secrets" / "nats-nas-remote.password").read_text().strip()
    # The secret goes into a file through a shell builtin: no process gets it on argv or in a URL.
    assert f"echo '{password}' >" in line
    assert "UNITY_NATS_PASSWORD=" not in line and "@" not in line.split("UNITY_NATS_URL=")[1]

    home = tmp_path / "nas-home"
    home.mkdir()
    log = tmp_path / "nas-collector.log"
    with open(log, "wb") as out:
        remote = subprocess.Popen(
            ["sh", "-c", line],
            env=_remote_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while _hosts(up) < {"e2e-host", "nas-remote"}:
            assert remote.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"hosts in /latest: {_hosts(up)}"
            time.sleep(0.5)
        cfg = home / ".config" / "unity"
        assert (cfg / "nats.password").stat().st_mode & 0o777 == 0o600
        asyncio.run(_limits(LISTEN, int(port), cfg, password))
    finally:
        os.killpg(remote.pid, signal.SIGTERM)
        remote.wait(30)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(90) == 0, up.output()


async def _limits(host: str, port: int, cfg: Path, password: str) -> None:
    """The remote login works only over TLS, and publishes only as its own host."""
    context = ssl.create_default_context(cafile=str(cfg / "ca.crt"))

    async def quiet(exc: Exception) -> None:
        del exc  # the refusals below are the point

    nc = await nats.connect(
        f"tls://{host}:{port}",
        user="nas-remote",
        password=password,
        tls=context,
        inbox_prefix="_INBOX.nas-remote",
        allow_reconnect=False,
        error_cb=quiet,
    )
    try:
        js = nc.jetstream(timeout=3)
        ack = await js.publish("unity.metrics.nas-remote.probe", b"{}")  # its own subject
        assert ack.stream == "UNITY_METRICS"
        # Another host's subject: the server drops it (permissions violation), so no ack.
        with pytest.raises((nats.errors.Error, TimeoutError)):
            await js.publish("unity.metrics.e2e-host.cpu", b"{}")
    finally:
        await nc.close()
    # Without TLS (and the hub's CA) there is no connection at all.
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(
            f"nats://{host}:{port}",
            user="nas-remote",
            password=password,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            connect_timeout=2,
            error_cb=quiet,
        )
