"""`unity up` as a user runs it: a subprocess on a temp data folder, and its cleanup."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from unity.compose.embedded import free_port


class Up:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.api_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("UNITY_")}
        self.env.update(
            UNITY_DATA_DIR=str(data),
            UNITY_API_PORT=str(self.api_port),
            UNITY_NATS_PORT=str(free_port()),
            UNITY_POSTGRES_PORT=str(free_port()),
            UNITY_VALKEY_PORT=str(free_port()),
            UNITY_COLLECT_INTERVAL="1",
            UNITY_HOST_NAME="e2e-host",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.data.parent / f"{self.data.name}-up.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "unity.compose", "up", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self.proc

    def output(self) -> str:
        return (self.data.parent / f"{self.data.name}-up.log").read_text(errors="replace")

    @property
    def token(self) -> str:
        """The admin token `unity up` printed once, on the first start of this data folder."""
        found = re.search(r"Admin token \(shown once, keep it\): (\S+)", self.output())
        assert found, f"no admin token printed:\n{self.output()}"
        return found[1]

    def get(self, path: str, **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=5)

    def latest(self) -> dict[str, object] | None:
        if "Unity is up." not in self.output():
            return None
        try:
            resp = self.get("/latest", host="e2e-host")
        except httpx.HTTPError:
            return None
        return resp.json() if resp.status_code == 200 else None

    def wait_for_plugins(self, timeout: float = 60) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.output()
            body = self.latest()
            if body is not None:
                items = body["items"]
                assert isinstance(items, list)
                if {i["plugin"] for i in items} >= {"cpu", "memory"}:
                    return body
            time.sleep(0.5)
        raise AssertionError(f"no cpu and memory values within {timeout}s:\n{self.output()}")


def fresh_up() -> Iterator[Up]:
    """An Up on a new data folder (for a fixture); afterwards nothing of it may still run."""
    base = Path(tempfile.mkdtemp(prefix="unity-up-"))
    base.chmod(0o711)
    instance = Up(base / "data")
    yield instance
    if instance.proc is not None and instance.proc.poll() is None:
        instance.proc.kill()
        instance.proc.wait()
    # Children of a killed `up` stop by themselves (PR_SET_PDEATHSIG), gracefully, so give them
    # the time that takes; anything on our data folder still running after it is a leak.
    remaining = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(base) in " ".join(p.info["cmdline"] or [])
    ]
    _, leaked = psutil.wait_procs(remaining, timeout=30)
    for p in leaked:
        p.kill()
    shutil.rmtree(base, ignore_errors=True)
    assert not leaked, f"processes left running: {leaked}"
