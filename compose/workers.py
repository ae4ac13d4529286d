"""Several ingest worker processes on the one durable consumer (`unity ingest --workers N`).

The parent only supervises: each child is `python -m compose ingest --worker-name wI` with the
parent's settings passed as ``UNITY_*`` variables (secrets stay in the inherited environment or
the data dir). A child that dies is restarted with backoff; SIGTERM or SIGINT is forwarded and
each child finishes and acks its batch in hand before exiting.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from unity.compose.embedded import spawn, stop_process
from unity.sdk.settings import Settings, settings_env

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 90.0
# A worker up this long had a healthy run: its restart delay starts over from 2 s.
HEALTHY_RUN_S = 60.0


class Workers:
    """Supervises ``count`` ingest processes until SIGTERM or SIGINT."""

    def __init__(self, settings: Settings, count: int) -> None:
        if count < 1:
            raise ValueError("at least one worker")
        self.settings = settings
        self.count = count
        self.log_dir = settings.data_path / "logs"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._restart_at: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._started_at: dict[str, float] = {}
        self._stopping = False

    def argv(self, name: str) -> list[str]:
        return [sys.executable, "-m", "unity.compose", "ingest", "--worker-name", name]

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"ingest-{name}.log"

    def run(self) -> int:
        env = {**os.environ, **settings_env(self.settings)}
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for i in range(self.count):
                self._start(f"w{i}", env)
            while not self._stopping:
                self._watch(env)
                time.sleep(0.2)
        finally:
            for name, proc in self._procs.items():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    log.info("stopping ingest worker %s (pid %d)", name, proc.pid)
            for name, proc in self._procs.items():
                stop_process(proc, signal.SIGTERM, STOP_TIMEOUT_S, f"ingest {name}")
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _start(self, name: str, env: dict[str, str]) -> None:
        proc = spawn(self.argv(name), self.log_path(name), env=env)
        self._procs[name] = proc
        self._started_at[name] = time.monotonic()
        log.info("ingest worker %s started (pid %d, log %s)", name, proc.pid, self.log_path(name))

    def restart_delay(self, name: str, ran_for: float) -> float:
        """Seconds to wait after worker ``name`` exited ``ran_for`` seconds after its start:
        2, 4 ... 60, and 2 again after a healthy run."""
        if ran_for >= HEALTHY_RUN_S:
            self._backoff.pop(name, None)
        delay = min(self._backoff.get(name, 1.0) * 2, 60.0)
        self._backoff[name] = delay
        return delay

    def _watch(self, env: dict[str, str]) -> None:
        now = time.monotonic()
        for name, proc in list(self._procs.items()):
            if proc.poll() is None:
                continue
            due = self._restart_at.get(name)
            if due is None:
                delay = self.restart_delay(name, now - self._started_at[name])
                self._restart_at[name] = now + delay
                log.warning(
                    "ingest worker %s exited with %s; restarting in %.0fs",
                    name,
                    proc.returncode,
                    delay,
                )
            elif now >= due:
                del self._restart_at[name]
                self._start(name, env)
