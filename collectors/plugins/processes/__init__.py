"""Top processes by CPU or memory (an event) and samples for the processes named in the config.

Names are the kernel's process names (``comm``: at most 15 characters), as ``ps -e`` shows them.

CPU share for the ranking is the CPU time a process used since the previous run over the wall
time between runs; no run sleeps to measure it. The first run ranks by CPU time since start.

CPU seconds per name are a counter kept by the plugin, not a sum over the processes alive now
(which drops when one exits): each run adds what every process of that name used since the
previous run (all of it for a process new since then). It starts again when the collector does,
which the query layer takes as a counter reset.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from unity.collectors.hostfs import DEFAULT_PROC, read_text
from unity.collectors.pidstat import PidStat, snapshot
from unity.sdk import Metric, Plugin, Sink

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class ProcessesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    top: Annotated[int, msgspec.Meta(ge=0, le=100)] = 5
    sort_by: Literal["cpu", "memory"] = "cpu"
    names: list[str] = []
    proc_root: str = DEFAULT_PROC
    host_root: str = "/"


@dataclass(frozen=True, slots=True)
class Seen:
    pid: int
    name: str
    folder: str
    cpu_seconds: float
    rss: int
    threads: int
    started: float


def read_processes(processes: tuple[PidStat, ...]) -> list[Seen]:
    """Every process from one read of ``/proc/<pid>/stat`` each (psutil needs three or more)."""
    return [
        Seen(
            p.pid,
            p.name,
            p.folder,
            (int(f[11]) + int(f[12])) / _TICK,
            int(f[21]) * _PAGE,
            int(f[17]),
            float(f[19]),
        )
        for p in processes
        if len(f := p.fields) >= 22
    ]


def user_name(uid: int, host_root: str) -> str:
    """The name of ``uid`` on the host at ``host_root``; the number itself when it has none."""
    if os.path.normpath(host_root) == "/":
        # Through NSS, so LDAP or sssd users are named too.
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)
    # pwd would answer from the container's own passwd; the host's NSS is out of reach.
    for line in (read_text(Path(host_root, "etc/passwd")) or "").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2] == str(uid):
            return fields[0]
    return str(uid)


def owner(folder: str, users: dict[int, str], host_root: str) -> str | None:
    """The user name owning a process folder; None when the process has exited since."""
    try:
        uid = os.stat(folder).st_uid
    except OSError:
        return None
    if uid not in users:
        users[uid] = user_name(uid, host_root)
    return users[uid]


def mem_total(proc_root: str) -> int:
    for line in (read_text(Path(proc_root, "meminfo")) or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


class ProcessesPlugin(Plugin):
    id = "processes"
    name = "Processes"
    description = "Top N processes by CPU or memory, and per-name samples for chosen processes."
    category = "system"
    Config = ProcessesConfig
    metrics = (
        Metric("processes_total", "", "gauge", "processes visible"),
        Metric("process_count", "", "gauge", "processes with the configured name"),
        Metric(
            "process_cpu_seconds",
            "seconds",
            "counter",
            "CPU time used by processes of this name, exited ones included",
        ),
        Metric("process_memory_rss_bytes", "bytes", "gauge", "resident memory of the named ones"),
        Metric("process_threads", "", "gauge", "threads of the named processes"),
    )

    config: ProcessesConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._users: dict[int, str] = {}
        self._previous: dict[tuple[int, float], float] = {}
        self._previous_at = 0.0
        self._cpu_totals: dict[str, float] = {}

    def collect(self, sink: Sink) -> None:
        root = self.config.proc_root
        walk = snapshot(root)
        # The walk's own time: it may have been read for another plugin of this tick.
        now = walk.taken
        seen = read_processes(walk.processes)
        sink.add("processes_total", len(seen))
        for name in self.config.names:
            group = [p for p in seen if p.name == name]
            labels = {"name": name}
            sink.add("process_count", len(group), labels)
            sink.add("process_cpu_seconds", self._cpu_total(name, group), labels)
            sink.add("process_memory_rss_bytes", sum(p.rss for p in group), labels)
            sink.add("process_threads", sum(p.threads for p in group), labels)
        if self.config.top:
            total_memory = mem_total(root)
            sink.event("top_processes", self._summary(), self._top(seen, now, total_memory))
        self._previous = {(p.pid, p.started): p.cpu_seconds for p in seen}
        self._previous_at = now

    def _cpu_total(self, name: str, group: list[Seen]) -> float:
        used = sum(
            max(0.0, p.cpu_seconds - self._previous.get((p.pid, p.started), 0.0)) for p in group
        )
        total = self._cpu_totals.get(name, 0.0) + used
        self._cpu_totals[name] = total
        return total

    def _summary(self) -> str:
        return f"top {self.config.top} processes by {self.config.sort_by}"

    def _top(self, seen: list[Seen], now: float, total_memory: int) -> dict[str, Any]:
        elapsed = now - self._previous_at if self._previous else 0.0

        def cpu_percent(p: Seen) -> float | None:
            before = self._previous.get((p.pid, p.started))
            if not elapsed or before is None:
                return None
            return round(100.0 * max(0.0, p.cpu_seconds - before) / elapsed, 2)

        rows = [(p, cpu_percent(p)) for p in seen]
        if self.config.sort_by == "memory":
            rows.sort(key=lambda r: r[0].rss, reverse=True)
        else:
            rows.sort(key=lambda r: (r[1] or 0.0, r[0].cpu_seconds), reverse=True)
        return {
            "sort_by": self.config.sort_by,
            "interval_s": round(elapsed, 3),
            "processes": [
                {
                    "pid": p.pid,
                    "name": p.name,
                    "user": owner(p.folder, self._users, self.config.host_root),
                    "cpu_percent": pct,
                    "cpu_seconds": round(p.cpu_seconds, 2),
                    "rss_bytes": p.rss,
                    "memory_percent": round(100.0 * p.rss / total_memory, 2)
                    if total_memory
                    else None,
                    "threads": p.threads,
                }
                for p, pct in rows[: self.config.top]
            ],
        }
