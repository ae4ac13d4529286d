"""Load, uptime, boot time, users, processes by state; the OS and kernel as an event."""

from __future__ import annotations

import collections
import os
import platform
import struct
from pathlib import Path
from typing import Any

import msgspec
import psutil

from unity.collectors.hostfs import DEFAULT_PROC, read_text, read_word
from unity.collectors.pidstat import snapshot
from unity.sdk import Metric, Plugin, Sink

# The state letter of /proc/<pid>/stat (fs/proc/array.c).
PROCESS_STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk_sleep",
    "Z": "zombie",
    "T": "stopped",
    "t": "tracing_stop",
    "X": "dead",
    "I": "idle",
    "P": "parked",
    "W": "paging",
}

# struct utmp (utmp.h) is 384 bytes on Linux, 32- and 64-bit alike; ut_type is its first short.
_UTMP_RECORD = struct.Struct("@h382x")
_USER_PROCESS = 7


class SystemConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    users: bool = True
    process_states: bool = True
    proc_root: str = DEFAULT_PROC
    host_root: str = "/"


def process_states(proc_root: str) -> dict[str, int]:
    letters = collections.Counter(p.fields[0] for p in snapshot(proc_root).processes)
    counts: collections.Counter[str] = collections.Counter()
    for letter, count in letters.items():
        counts[PROCESS_STATES.get(letter, "other")] += count
    return dict(counts)


def logged_in(host_root: str) -> int:
    """Sessions in the utmp of the host at ``host_root``, counted as psutil.users() counts them.

    psutil only reads the collector's own utmp, so a host root is read here. Only ``run/utmp``:
    ``var/run`` is an absolute link to /run on current distributions and would resolve inside
    the container. A host with no utmp (logind replaces it on newer systems) has no sessions,
    as psutil reports it.
    """
    if os.path.normpath(host_root) == "/":
        return len(psutil.users())
    try:
        data = Path(host_root, "run/utmp").read_bytes()
    except OSError:
        return 0
    # A record being written may be cut short at the end of the file.
    whole = data[: len(data) - len(data) % _UTMP_RECORD.size]
    return sum(kind == _USER_PROCESS for (kind,) in _UTMP_RECORD.iter_unpack(whole))


def os_release(host_root: str) -> dict[str, str]:
    text = read_text(Path(host_root, "etc/os-release")) or read_text(
        Path(host_root, "usr/lib/os-release")
    )
    found = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("ID", "VERSION_ID", "PRETTY_NAME"):
            found[key.lower()] = value.strip().strip("\"'")
    return found


class SystemPlugin(Plugin):
    id = "system"
    name = "System"
    description = "Load, uptime, boot time, logged-in users, processes by state, OS and kernel."
    category = "system"
    Config = SystemConfig
    metrics = (
        Metric("system_load1", "", "gauge", "1-minute load average"),
        Metric("system_load5", "", "gauge", "5-minute load average"),
        Metric("system_load15", "", "gauge", "15-minute load average"),
        Metric("system_uptime_seconds", "seconds", "gauge", "time since boot"),
        Metric("system_boot_time_seconds", "seconds", "gauge", "boot time, seconds since epoch"),
        Metric("system_users", "", "gauge", "logged-in user sessions"),
        Metric("system_processes", "", "gauge", "processes per state"),
        Metric("system_threads", "", "gauge", "kernel scheduling entities (threads)"),
    )

    config: SystemConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._reported_os: dict[str, Any] | None = None

    def collect(self, sink: Sink) -> None:
        root = self.config.proc_root
        loadavg = read_text(Path(root, "loadavg"))
        uptime = read_text(Path(root, "uptime"))
        stat = read_text(Path(root, "stat"))
        if loadavg is None or uptime is None or stat is None:
            raise FileNotFoundError(f"{root}/loadavg, uptime or stat is missing")
        fields = loadavg.split()
        sink.add("system_load1", float(fields[0]))
        sink.add("system_load5", float(fields[1]))
        sink.add("system_load15", float(fields[2]))
        sink.add("system_threads", int(fields[3].partition("/")[2]))
        sink.add("system_uptime_seconds", float(uptime.split()[0]))
        btime = next(
            (line.split()[1] for line in stat.splitlines() if line.startswith("btime")), None
        )
        if btime is not None:
            sink.add("system_boot_time_seconds", int(btime))
        if self.config.users:
            sink.add("system_users", logged_in(self.config.host_root))
        if self.config.process_states:
            # One read of /proc/<pid>/stat per process, shared with the processes plugin's run
            # of the same tick (collectors/pidstat.py).
            for state, count in sorted(process_states(root).items()):
                sink.add("system_processes", count, {"state": state})
        else:
            counters = dict(
                line.split()[:2] for line in stat.splitlines() if line.startswith("procs_")
            )
            sink.add(
                "system_processes", int(counters.get("procs_running", 0)), {"state": "running"}
            )
            sink.add(
                "system_processes", int(counters.get("procs_blocked", 0)), {"state": "disk_sleep"}
            )
        self._os_event(sink)

    def _os_event(self, sink: Sink) -> None:
        # A document, not a number: sent on the first run and whenever it changes.
        kernel = Path(self.config.proc_root, "sys/kernel")
        info: dict[str, Any] = {
            "os": read_word(kernel / "ostype") or platform.system(),
            "kernel": read_word(kernel / "osrelease") or platform.release(),
            "kernel_version": read_word(kernel / "version") or platform.version(),
            "arch": platform.machine(),
            **os_release(self.config.host_root),
        }
        if info != self._reported_os:
            sink.event("os_info", f"{info.get('pretty_name', info['os'])}, {info['kernel']}", info)
            self._reported_os = info
