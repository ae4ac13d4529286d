"""Linux software RAID (md) arrays from /proc/mdstat, with sync_action and degraded from sysfs.

/proc/mdstat's format is the kernel's (drivers/md/md.c, md_seq_show and status_resync): one
header line per array, an indented status line (Synology's kernel does not indent), and an
optional progress line. Member flags: (F) faulty, (S) spare, (W) write-mostly, (J) journal,
(R) replacement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from unity.collectors.hostfs import DEFAULT_PROC, DEFAULT_SYS, read_number, read_word
from unity.sdk import Metric, Plugin, Sink

_HEADER = re.compile(r"^(md[\w/-]*)\s*:\s*(active|inactive)(?:\s+\(([\w-]+)\))?\s*(.*)$")
_MEMBER = re.compile(r"^([^\s\[]+)\[(\d+)\]((?:\([A-Z]\))*)$")
_FLAG = re.compile(r"\(([A-Z])\)")
_LEVEL = re.compile(r"^(raid\d+|linear|multipath|faulty)$")
_BLOCKS = re.compile(r"^\s*(\d+) blocks\b")
_COUNTS = re.compile(r"\[(\d+)/(\d+)\]\s+\[([U_]+)\]")
_PROGRESS = re.compile(
    r"\b(resync|recovery|reshape|check|repair)\s*=\s*([\d.]+)%"
    r"(?:.*?finish=([\d.]+)min)?(?:.*?speed=(\d+)K/sec)?"
)
_WAITING = re.compile(r"\b(resync|recovery|reshape|check|repair)\s*=\s*(DELAYED|PENDING)")
# /proc/mdstat names the running action as sysfs sync_action does, but for one word.
_ACTION = {"recovery": "recover"}


class RaidError(RuntimeError):
    """/proc/mdstat is missing or unreadable."""


@dataclass
class Array:
    name: str
    active: bool
    level: str = ""
    read_only: str = ""
    members: dict[str, str] = field(default_factory=dict)  # device -> flags ("", "F", "S"...)
    size_bytes: float | None = None
    required: int | None = None
    in_sync: int | None = None
    action: str = "idle"
    progress: float | None = None
    finish_seconds: float | None = None
    speed_bytes: float | None = None
    waiting: str = ""

    @property
    def failed(self) -> int:
        return sum("F" in f for f in self.members.values())

    @property
    def spares(self) -> int:
        return sum("S" in f and "F" not in f for f in self.members.values())

    @property
    def missing(self) -> int:
        return (self.required - self.in_sync) if self.required and self.in_sync is not None else 0

    @property
    def state(self) -> str:
        if not self.active:
            return "inactive"
        if self.action != "idle":
            return self.action if not self.missing else f"degraded, {self.action}"
        return "degraded" if self.missing else "clean"


def parse(text: str) -> list[Array]:
    arrays: list[Array] = []
    current: Array | None = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            current = Array(header.group(1), header.group(2) == "active")
            current.read_only = header.group(3) or ""
            words = header.group(4).split()
            if words and _LEVEL.match(words[0]):
                current.level = words.pop(0)
            for word in words:
                member = _MEMBER.match(word)
                if member:
                    current.members[member.group(1)] = "".join(_FLAG.findall(member.group(3)))
            arrays.append(current)
            continue
        if current is None or not line.strip():
            if not line.strip():
                current = None
            continue
        blocks = _BLOCKS.match(line)
        if blocks:
            current.size_bytes = float(blocks.group(1)) * 1024
            counts = _COUNTS.search(line)
            if counts:
                current.required, current.in_sync = int(counts.group(1)), int(counts.group(2))
        progress = _PROGRESS.search(line)
        if progress:
            current.action = _ACTION.get(progress.group(1), progress.group(1))
            current.progress = float(progress.group(2))
            if progress.group(3):
                current.finish_seconds = float(progress.group(3)) * 60
            if progress.group(4):
                current.speed_bytes = float(progress.group(4)) * 1024
        waiting = _WAITING.search(line)
        if waiting:
            current.waiting = f"{waiting.group(1)} {waiting.group(2).lower()}"
    return arrays


def with_sysfs(array: Array, sys_root: str) -> Array:
    """The kernel's own view where sysfs has it: the running action and missing members."""
    md = Path(sys_root, "block", array.name, "md")
    action = read_word(md / "sync_action")
    if action:
        array.action = action
        if action == "idle":
            array.progress = array.finish_seconds = array.speed_bytes = None
    degraded = read_number(md / "degraded")
    if degraded is not None and array.required:
        array.in_sync = array.required - int(degraded)
    return array


class RaidConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    proc_root: str = DEFAULT_PROC
    sys_root: str = DEFAULT_SYS
    # Arrays to leave out (md names); empty = every array.
    exclude: tuple[str, ...] = ()


class RaidPlugin(Plugin):
    id = "raid"
    name = "Software RAID"
    description = "Linux md arrays: state, active/failed/spare/missing members, sync progress."
    category = "storage"
    tags = ("mdadm", "md", "raid")
    Config = RaidConfig
    metrics = (
        Metric("raid_active", "", "gauge", "1 when the array runs, 0 when inactive"),
        Metric("raid_degraded", "", "gauge", "1 while members are missing"),
        Metric("raid_disks_required", "", "gauge", "members the level needs"),
        Metric("raid_disks_active", "", "gauge", "members in sync"),
        Metric("raid_disks_missing", "", "gauge", "members missing (sysfs degraded)"),
        Metric("raid_disks_failed", "", "gauge", "members marked (F)"),
        Metric("raid_disks_spare", "", "gauge", "spares (S)"),
        Metric("raid_size_bytes", "bytes", "gauge", "array size"),
        Metric("raid_syncing", "", "gauge", "1 while resync/recover/reshape/check/repair runs"),
        Metric("raid_sync_progress_percent", "percent", "gauge", "progress of the running action"),
        Metric("raid_sync_remaining_seconds", "seconds", "gauge", "kernel's estimate to finish"),
        Metric("raid_sync_speed_bytes_per_second", "bytes/s", "gauge", "sync speed"),
        Metric("raid_arrays", "", "gauge", "arrays found"),
    )

    config: RaidConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._states: dict[str, str] | None = None

    @property
    def mdstat(self) -> Path:
        return Path(self.config.proc_root, "mdstat")

    def unavailable(self) -> str | None:
        return None if self.mdstat.exists() else f"no {self.mdstat} (md driver not loaded)"

    def arrays(self) -> Iterator[Array]:
        try:
            text = self.mdstat.read_text()
        except OSError as exc:
            raise RaidError(f"cannot read {self.mdstat}: {exc.strerror}") from None
        for array in parse(text):
            if array.name not in self.config.exclude:
                yield with_sysfs(array, self.config.sys_root)

    def collect(self, sink: Sink) -> None:
        states: dict[str, str] = {}
        inventory: list[dict[str, Any]] = []
        for array in self.arrays():
            labels = {"md": array.name, "level": array.level or "unknown"}
            sink.add("raid_active", 1.0 if array.active else 0.0, labels)
            sink.add("raid_degraded", 1.0 if array.missing else 0.0, labels)
            if array.required is not None and array.in_sync is not None:
                sink.add("raid_disks_required", array.required, labels)
                sink.add("raid_disks_active", array.in_sync, labels)
                sink.add("raid_disks_missing", array.missing, labels)
            sink.add("raid_disks_failed", array.failed, labels)
            sink.add("raid_disks_spare", array.spares, labels)
            if array.size_bytes is not None:
                sink.add("raid_size_bytes", array.size_bytes, labels)
            sink.add("raid_syncing", 0.0 if array.action in ("idle", "frozen") else 1.0, labels)
            action = {**labels, "action": array.action}
            for metric, value in (
                ("raid_sync_progress_percent", array.progress),
                ("raid_sync_remaining_seconds", array.finish_seconds),
                ("raid_sync_speed_bytes_per_second", array.speed_bytes),
            ):
                if value is not None:
                    sink.add(metric, value, action)
            states[array.name] = array.state
            inventory.append(
                {
                    "md": array.name,
                    "level": array.level,
                    "state": array.state,
                    "read_only": array.read_only,
                    "members": array.members,
                    "waiting": array.waiting,
                }
            )
            before = None if self._states is None else self._states.get(array.name)
            if array.missing and (before is None or not before.startswith("degraded")):
                sink.event(
                    "raid_degraded",
                    f"{array.name} ({array.level}) degraded: {array.missing} of "
                    f"{array.required} members missing, {array.failed} failed",
                    inventory[-1],
                    "critical",
                )
        sink.add("raid_arrays", float(len(states)))
        if states != self._states:
            sink.event(
                "raid_arrays",
                ", ".join(f"{md} {state}" for md, state in states.items()) or "no arrays",
                {"arrays": inventory},
            )
        self._states = states
