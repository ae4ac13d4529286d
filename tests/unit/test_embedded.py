from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from compose.embedded import PidFile, free_port, spawn, stop_process


def test_pidfile_finds_a_leftover_process_and_ignores_a_recycled_pid(tmp_path: Path) -> None:
    proc = spawn([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "log")
    pidfile = PidFile(tmp_path / "x.pid")
    pidfile.write(proc.pid)
    stale = pidfile.stale_process()
    assert stale is not None and stale.pid == proc.pid
    stop_process(stale, 15, 5, "sleeper")
    proc.wait(5)
    assert pidfile.stale_process() is None
    # A pid file naming a live pid with another start time is not ours.
    pidfile.path.write_text(f'{{"pid": {psutil.Process().pid}, "created": 1.0}}')
    assert pidfile.stale_process() is None


def test_stop_process_kills_what_ignores_the_signal(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print(1, flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stdout.readline()
        stop_process(proc, 15, 0.5, "stubborn")
    assert proc.returncode == -9


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
