"""btrfs filesystems: `btrfs filesystem usage -b` and `btrfs device stats` per mounted filesystem.

Both need root (or ``sudo -n``). Without it, ``source = "sysfs"`` reads what the kernel shows
anyone under /sys/fs/btrfs: space per block group type and profile, and the devices, but no
error counters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

from unity.collectors import command
from unity.collectors.hostfs import DEFAULT_PROC, DEFAULT_SYS, read_number, read_text
from unity.sdk import Metric, Plugin, Sink

OVERALL = {
    "Device size": "btrfs_device_size_bytes",
    "Device allocated": "btrfs_allocated_bytes",
    "Device unallocated": "btrfs_unallocated_bytes",
    "Device missing": "btrfs_missing_bytes",
    "Used": "btrfs_used_bytes",
    "Free (estimated)": "btrfs_free_estimated_bytes",
}
ERRORS = ("write_io_errs", "read_io_errs", "flush_io_errs", "corruption_errs", "generation_errs")
_OVERALL_LINE = re.compile(r"^\s+([A-Za-z ()]+?):\s+(-?\d+)\b")
_PROFILE = re.compile(r"^(Data|Metadata|System),([\w]+): Size:(\d+), Used:(\d+)")
_DEVICE_LINE = re.compile(r"^\s+(\S+)\s+\d+\s*$")
_STAT = re.compile(r"^\[(.+)\]\.(\w+)\s+(\d+)\s*$")


class BtrfsError(RuntimeError):
    """btrfs printed something this plugin cannot read."""


@dataclass
class Usage:
    overall: dict[str, float] = field(default_factory=dict)
    profiles: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)


def parse_usage(text: str) -> Usage:
    usage = Usage()
    section = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            section = line.split(":")[0]
            profile = _PROFILE.match(line)
            if profile:
                kind, name = profile.group(1).lower(), profile.group(2).lower()
                usage.profiles[kind, name] = (float(profile.group(3)), float(profile.group(4)))
            continue
        if section == "Overall":
            match = _OVERALL_LINE.match(line)
            if match and match.group(1) in OVERALL:
                usage.overall[OVERALL[match.group(1)]] = float(match.group(2))
        elif (device := _DEVICE_LINE.match(line)) is not None:
            usage.devices.add(device.group(1))
    if not usage.overall:
        raise BtrfsError("btrfs filesystem usage: no 'Overall:' section (is -b supported?)")
    return usage


def parse_stats(text: str) -> dict[str, dict[str, float]]:
    """Device -> error counter -> value (``[devid:N]`` names a missing device)."""
    found: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _STAT.match(line)
        if match:
            found.setdefault(match.group(1), {})[match.group(2)] = float(match.group(3))
    return found


def btrfs_mounts(proc_root: str) -> list[str]:
    """Mount points of btrfs filesystems, one per filesystem (subvolume mounts repeat it)."""
    text = read_text(Path(proc_root, "self", "mounts")) or ""
    seen: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[2] == "btrfs" and words[0] not in seen:
            seen[words[0]] = words[1].replace("\\040", " ")
    return list(seen.values())


@dataclass
class SysfsFilesystem:
    uuid: str
    label: str
    devices: list[str]
    profiles: dict[tuple[str, str], tuple[float, float]]


def read_sysfs(sys_root: str) -> Iterator[SysfsFilesystem]:
    base = Path(sys_root, "fs", "btrfs")
    if not base.is_dir():
        return
    for fs in sorted(base.iterdir()):
        if not (fs / "allocation").is_dir():
            continue  # "features" and other non-filesystem entries
        profiles: dict[tuple[str, str], tuple[float, float]] = {}
        for kind in ("data", "metadata", "system"):
            folder = fs / "allocation" / kind
            if not folder.is_dir():
                continue
            for profile in sorted(p for p in folder.iterdir() if p.is_dir()):
                total = read_number(profile / "total_bytes")
                used = read_number(profile / "used_bytes")
                if total is not None and used is not None:
                    profiles[kind, profile.name] = (total, used)
        devices = (
            sorted(p.name for p in (fs / "devices").iterdir()) if (fs / "devices").is_dir() else []
        )
        label = (read_text(fs / "label") or "").strip()
        yield SysfsFilesystem(fs.name, label, devices, profiles)


class BtrfsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: Literal["cli", "sysfs"] = "cli"
    command: tuple[str, ...] = ("btrfs",)
    command_timeout: float = 10.0
    # Mount points to read; empty = every btrfs filesystem in the mount table.
    mounts: tuple[str, ...] = ()
    proc_root: str = DEFAULT_PROC
    sys_root: str = DEFAULT_SYS


class BtrfsPlugin(Plugin):
    id = "btrfs"
    name = "btrfs"
    description = "btrfs filesystems: space overall and per profile, devices, device errors."
    category = "storage"
    tags = ("btrfs", "filesystem")
    Config = BtrfsConfig
    metrics = (
        Metric("btrfs_device_size_bytes", "bytes", "gauge", "size of all its devices"),
        Metric("btrfs_allocated_bytes", "bytes", "gauge", "allocated to block groups"),
        Metric("btrfs_unallocated_bytes", "bytes", "gauge", "not yet allocated"),
        Metric("btrfs_missing_bytes", "bytes", "gauge", "size of missing devices"),
        Metric("btrfs_used_bytes", "bytes", "gauge", "used, all copies"),
        Metric("btrfs_free_estimated_bytes", "bytes", "gauge", "free for data, estimated"),
        Metric("btrfs_devices", "", "gauge", "devices in the filesystem"),
        Metric("btrfs_profile_size_bytes", "bytes", "gauge", "allocated to a type and profile"),
        Metric("btrfs_profile_used_bytes", "bytes", "gauge", "used in a type and profile"),
        Metric("btrfs_device_errors_total", "", "counter", "device errors by kind"),
    )

    config: BtrfsConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: dict[tuple[str, str], float] | None = None

    def unavailable(self) -> str | None:
        if self.config.source == "sysfs":
            if any(True for _ in read_sysfs(self.config.sys_root)):
                return None
            return f"no btrfs filesystem under {self.config.sys_root}/fs/btrfs"
        missing = command.missing(self.config.command)
        if missing:
            return missing
        if not self.config.mounts and not btrfs_mounts(self.config.proc_root):
            return "no btrfs filesystem mounted"
        return None

    def _btrfs(self, *args: str) -> str:
        return command.run(self.config.command, args, timeout=self.config.command_timeout).stdout

    def collect(self, sink: Sink) -> None:
        if self.config.source == "sysfs":
            self._collect_sysfs(sink)
            return
        mounts = list(self.config.mounts) or btrfs_mounts(self.config.proc_root)
        errors: dict[tuple[str, str], float] = {}
        for mount in mounts:
            labels = {"filesystem": mount}
            usage = parse_usage(self._btrfs("filesystem", "usage", "-b", mount))
            for metric, value in usage.overall.items():
                sink.add(metric, value, labels)
            sink.add("btrfs_devices", float(len(usage.devices)), labels)
            for (kind, profile), (size, used) in usage.profiles.items():
                profile_labels = {**labels, "type": kind, "profile": profile}
                sink.add("btrfs_profile_size_bytes", size, profile_labels)
                sink.add("btrfs_profile_used_bytes", used, profile_labels)
            for device, counters in parse_stats(self._btrfs("device", "stats", mount)).items():
                for kind, value in counters.items():
                    sink.add(
                        "btrfs_device_errors_total",
                        value,
                        {**labels, "device": device, "kind": kind.removesuffix("_errs")},
                    )
                    errors[f"{mount} {device}", kind] = value
        self._events(sink, errors)

    def _events(self, sink: Sink, errors: dict[tuple[str, str], float]) -> None:
        before = self._errors or {}
        grown = {
            f"{where} {kind}": value
            for (where, kind), value in errors.items()
            if value > before.get((where, kind), 0.0)
        }
        if grown:
            sink.event(
                "btrfs_device_errors",
                ", ".join(f"{k} {v:g}" for k, v in grown.items()),
                {"errors": grown, "first_run": self._errors is None},
                "error",
            )
        self._errors = errors

    def _collect_sysfs(self, sink: Sink) -> None:
        found = list(read_sysfs(self.config.sys_root))
        if not found:
            raise BtrfsError(f"no btrfs filesystem under {self.config.sys_root}/fs/btrfs")
        for fs in found:
            labels = {"filesystem": fs.label or fs.uuid}
            sink.add("btrfs_devices", float(len(fs.devices)), labels)
            for (kind, profile), (size, used) in fs.profiles.items():
                profile_labels = {**labels, "type": kind, "profile": profile}
                sink.add("btrfs_profile_size_bytes", size, profile_labels)
                sink.add("btrfs_profile_used_bytes", used, profile_labels)
