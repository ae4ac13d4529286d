"""ZFS pools and datasets: `zpool list -Hp`, `zpool status -p`, `zfs list -Hp`.

``-H`` gives tab-separated rows without a header and ``-p`` exact numbers, so sizes are bytes;
older releases still print fragmentation as ``8%`` and dedup as ``1.83x`` and an unavailable
pool as ``-`` everywhere. ``zpool status`` has no parsable mode: its blocks (``pool:``,
``state:``, ``scan:``, ``config:``, ``errors:``) are read as OpenZFS and Solaris print them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from unity.collectors import command
from unity.sdk import Metric, Plugin, Sink

# Pool and vdev states (zpool_state_to_name): the published number of each.
HEALTH = {
    "ONLINE": 0,
    "DEGRADED": 1,
    "FAULTED": 2,
    "OFFLINE": 3,
    "UNAVAIL": 4,
    "REMOVED": 5,
    "SUSPENDED": 6,
}
UNKNOWN_HEALTH = 7
POOL_FIELDS = "name,health,size,allocated,free,fragmentation,capacity,dedupratio"
DATASET_FIELDS = "name,avail,used,usedsnap,usedds"
_HEALTHY_DEVICES = ("ONLINE", "AVAIL", "INUSE")
_KEY = re.compile(r"^\s*(pool|state|status|action|see|scan|scrub|config|errors):\s?(.*)$")
_DATE = r"(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})"
_FINISHED = re.compile(
    r"^(scrub|resilver)(?:ed)? (?:repaired|completed|[\d.]+\w*) .*?with (\d+) errors on " + _DATE
)
_RESILVERED = re.compile(r"^resilvered \S+ in .*? with (\d+) errors on " + _DATE)
_RUNNING = re.compile(r"^(scrub|resilver) in progress since")
_CANCELED = re.compile(r"^(scrub|resilver) canceled on " + _DATE)
_PAUSED = re.compile(r"^(scrub) paused since")
_DONE = re.compile(r"([\d.]+)% done")
_DATA_ERRORS = re.compile(r"^(\d+) data errors")


class ZfsError(RuntimeError):
    """zpool or zfs printed something this plugin cannot read."""


@dataclass
class Scan:
    function: str = "none"  # scrub | resilver | none
    state: str = "none"  # running | finished | canceled | paused | none
    progress: float | None = None
    errors: float | None = None
    ended: float | None = None


@dataclass
class PoolStatus:
    name: str
    state: str = ""
    scan: Scan = field(default_factory=Scan)
    read_errors: float = 0.0
    write_errors: float = 0.0
    checksum_errors: float = 0.0
    devices_unhealthy: list[str] = field(default_factory=list)
    data_errors: float = 0.0


def number(text: str, suffix: str = "") -> float | None:
    text = text.strip()
    if suffix and text.endswith(suffix):
        text = text[: -len(suffix)]
    try:
        return float(text)
    except ValueError:
        return None


def local_epoch(text: str) -> float | None:
    """zpool prints scan dates in the host's local time, without a zone: read them as such."""
    try:
        return time.mktime(time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        return None


def parse_list(text: str) -> list[dict[str, Any]]:
    pools = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 8:
            raise ZfsError(f"zpool list: expected 8 tab-separated fields: {line[:120]!r}")
        name, health, size, alloc, free, frag, cap, dedup = cols
        pools.append(
            {
                "name": name,
                "health": health,
                "zfs_pool_size_bytes": number(size),
                "zfs_pool_allocated_bytes": number(alloc),
                "zfs_pool_free_bytes": number(free),
                "zfs_pool_fragmentation_percent": number(frag, "%"),
                "zfs_pool_capacity_percent": number(cap, "%"),
                "zfs_pool_dedup_ratio": number(dedup, "x"),
            }
        )
    return pools


def parse_datasets(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 5:
            raise ZfsError(f"zfs list: expected 5 tab-separated fields: {line[:120]!r}")
        rows.append(
            {
                "name": cols[0],
                "zfs_dataset_available_bytes": number(cols[1]),
                "zfs_dataset_used_bytes": number(cols[2]),
                "zfs_dataset_snapshots_used_bytes": number(cols[3]),
                "zfs_dataset_own_used_bytes": number(cols[4]),
            }
        )
    return rows


def parse_scan(text: str) -> Scan:
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    done = _DONE.search(text)
    if match := _RUNNING.match(first):
        return Scan(match.group(1), "running", float(done.group(1)) if done else None)
    if match := _FINISHED.match(first):
        return Scan(
            match.group(1), "finished", 100.0, float(match.group(2)), local_epoch(match.group(3))
        )
    if match := _RESILVERED.match(first):
        return Scan(
            "resilver", "finished", 100.0, float(match.group(1)), local_epoch(match.group(2))
        )
    if match := _CANCELED.match(first):
        return Scan(match.group(1), "canceled", None, None, local_epoch(match.group(2)))
    if match := _PAUSED.match(first):
        return Scan(match.group(1), "paused", float(done.group(1)) if done else None)
    return Scan()


def _devices(pool: PoolStatus, table: list[tuple[int, list[str]]]) -> None:
    """Unhealthy devices and error counters from the config table, leaf devices only."""
    rows = [(depth, words) for depth, words in table if words[0] != "NAME"]
    spares = False
    for index, (depth, words) in enumerate(rows):
        if words[0] in ("spares", "logs", "cache", "special", "dedup"):
            spares = words[0] == "spares"
            continue
        leaf = index + 1 == len(rows) or rows[index + 1][0] <= depth
        if not leaf or len(words) < 2:
            continue
        if words[1] not in _HEALTHY_DEVICES:
            pool.devices_unhealthy.append(f"{words[0]} {words[1]}")
        if len(words) >= 5 and not spares:
            pool.read_errors += number(words[2]) or 0.0
            pool.write_errors += number(words[3]) or 0.0
            pool.checksum_errors += number(words[4]) or 0.0


def _data_errors(lines: list[str]) -> float:
    errors = " ".join(lines).strip()
    if match := _DATA_ERRORS.match(errors):
        return float(match.group(1))
    if errors.startswith("Permanent errors"):
        return float(max(1, sum(1 for e in lines[1:] if e.strip())))
    return 0.0


@dataclass
class _Block:
    pool: PoolStatus
    scan: list[str] = field(default_factory=list)
    table: list[tuple[int, list[str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def finish(self) -> PoolStatus:
        self.pool.scan = parse_scan("\n".join(self.scan))
        _devices(self.pool, self.table)
        self.pool.data_errors = _data_errors(self.errors)
        return self.pool


def parse_status(text: str) -> list[PoolStatus]:
    blocks: list[_Block] = []
    section = ""
    for line in text.splitlines():
        key = _KEY.match(line)
        if key and not (section == "config" and key.group(1) not in ("errors", "pool")):
            name, value = key.group(1), key.group(2)
            if name == "pool":
                blocks.append(_Block(PoolStatus(value.strip())))
            elif not blocks:
                continue
            elif name == "state":
                blocks[-1].pool.state = value.strip()
            elif name in ("scan", "scrub"):
                blocks[-1].scan = [value]
            elif name == "errors":
                blocks[-1].errors = [value]
            section = "scan" if name in ("scan", "scrub") else name
        elif not blocks or not line.strip():
            continue
        elif section == "scan" and line.startswith(("\t", " ")):
            blocks[-1].scan.append(line)
        elif section == "config":
            expanded = line.expandtabs(8)
            blocks[-1].table.append((len(expanded) - len(expanded.lstrip()), line.split()))
        elif section == "errors":
            blocks[-1].errors.append(line)
    return [block.finish() for block in blocks]


class ZfsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    zpool_command: tuple[str, ...] = ("zpool",)
    zfs_command: tuple[str, ...] = ("zfs",)
    command_timeout: float = 10.0
    datasets: bool = True


class ZfsPlugin(Plugin):
    id = "zfs"
    name = "ZFS"
    description = "ZFS pools: health, space, fragmentation, errors, scrub/resilver; datasets used."
    category = "storage"
    tags = ("zfs", "zpool", "openzfs")
    Config = ZfsConfig
    metrics = (
        Metric(
            "zfs_pool_health",
            "",
            "gauge",
            "0 ONLINE, 1 DEGRADED, 2 FAULTED, 3 OFFLINE, "
            "4 UNAVAIL, 5 REMOVED, 6 SUSPENDED, 7 other",
        ),
        Metric("zfs_pool_size_bytes", "bytes", "gauge", "pool size"),
        Metric("zfs_pool_allocated_bytes", "bytes", "gauge", "space allocated"),
        Metric("zfs_pool_free_bytes", "bytes", "gauge", "space free"),
        Metric("zfs_pool_fragmentation_percent", "percent", "gauge", "free space fragmentation"),
        Metric("zfs_pool_capacity_percent", "percent", "gauge", "share allocated"),
        Metric("zfs_pool_dedup_ratio", "", "gauge", "deduplication ratio"),
        Metric("zfs_pool_read_errors", "", "gauge", "read errors of its devices"),
        Metric("zfs_pool_write_errors", "", "gauge", "write errors of its devices"),
        Metric("zfs_pool_checksum_errors", "", "gauge", "checksum errors of its devices"),
        Metric("zfs_pool_devices_unhealthy", "", "gauge", "devices not ONLINE"),
        Metric("zfs_pool_data_errors", "", "gauge", "files with permanent errors"),
        Metric("zfs_pool_scan_running", "", "gauge", "1 while a scrub or resilver runs"),
        Metric("zfs_pool_scan_progress_percent", "percent", "gauge", "scrub/resilver progress"),
        Metric("zfs_pool_scan_errors", "", "gauge", "errors the last finished scan found"),
        Metric("zfs_pool_scan_end_time_seconds", "seconds", "gauge", "when the last scan ended"),
        Metric("zfs_dataset_used_bytes", "bytes", "gauge", "used by it and its children"),
        Metric("zfs_dataset_available_bytes", "bytes", "gauge", "available to it"),
        Metric("zfs_dataset_snapshots_used_bytes", "bytes", "gauge", "used by its snapshots"),
        Metric("zfs_dataset_own_used_bytes", "bytes", "gauge", "used by itself"),
    )

    config: ZfsConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._seen: dict[str, tuple[str, str]] | None = None

    def unavailable(self) -> str | None:
        return command.missing(self.config.zpool_command)

    def _run(self, cmd: tuple[str, ...], args: list[str]) -> str:
        return command.run(cmd, args, timeout=self.config.command_timeout).stdout

    def collect(self, sink: Sink) -> None:
        pools = parse_list(self._run(self.config.zpool_command, ["list", "-Hp", "-o", POOL_FIELDS]))
        statuses = {
            p.name: p for p in parse_status(self._run(self.config.zpool_command, ["status", "-p"]))
        }
        seen: dict[str, tuple[str, str]] = {}
        for pool in pools:
            labels = {"pool": pool["name"]}
            health = pool["health"]
            sink.add("zfs_pool_health", float(HEALTH.get(health, UNKNOWN_HEALTH)), labels)
            for metric, value in pool.items():
                if metric.startswith("zfs_") and value is not None:
                    sink.add(metric, value, labels)
            status = statuses.get(pool["name"])
            if status is None:
                continue
            sink.add("zfs_pool_read_errors", status.read_errors, labels)
            sink.add("zfs_pool_write_errors", status.write_errors, labels)
            sink.add("zfs_pool_checksum_errors", status.checksum_errors, labels)
            sink.add("zfs_pool_devices_unhealthy", float(len(status.devices_unhealthy)), labels)
            sink.add("zfs_pool_data_errors", status.data_errors, labels)
            scan = status.scan
            scan_labels = {**labels, "function": scan.function}
            sink.add("zfs_pool_scan_running", 1.0 if scan.state == "running" else 0.0, scan_labels)
            for metric, value in (
                ("zfs_pool_scan_progress_percent", scan.progress),
                ("zfs_pool_scan_errors", scan.errors),
                ("zfs_pool_scan_end_time_seconds", scan.ended),
            ):
                if value is not None:
                    sink.add(metric, value, scan_labels)
            seen[pool["name"]] = (health, f"{scan.function} {scan.state}")
            self._events(sink, pool["name"], health, status)
        if self.config.datasets:
            out = self._run(
                self.config.zfs_command,
                ["list", "-Hp", "-t", "filesystem,volume", "-o", DATASET_FIELDS],
            )
            for dataset in parse_datasets(out):
                labels = {"dataset": dataset["name"], "pool": dataset["name"].split("/")[0]}
                for metric, value in dataset.items():
                    if metric.startswith("zfs_") and value is not None:
                        sink.add(metric, value, labels)
        self._seen = seen

    def _events(self, sink: Sink, name: str, health: str, status: PoolStatus) -> None:
        before = None if self._seen is None else self._seen.get(name)
        scan = status.scan
        data = {
            "pool": name,
            "health": health,
            "was": before[0] if before else None,
            "devices_unhealthy": status.devices_unhealthy,
            "scan": f"{scan.function} {scan.state}",
            "data_errors": status.data_errors,
        }
        if (before is None and health != "ONLINE") or (before and before[0] != health):
            severity: Any = "info" if health == "ONLINE" else "critical" if health in (
                "FAULTED", "UNAVAIL", "SUSPENDED") else "error"  # fmt: skip
            was = f" (was {before[0]})" if before else ""
            sink.event("zfs_pool_health", f"pool {name} is {health}{was}", data, severity)
        if before and before[1].endswith("running") and scan.state != "running":
            found = f"{scan.errors:g} errors" if scan.errors is not None else scan.state
            sink.event(
                "zfs_scan_finished",
                f"{scan.function} of {name} {scan.state}: {found}",
                data,
                "warning" if scan.errors or scan.state != "finished" else "info",
            )
