"""Block device I/O from /proc/diskstats: bytes, operations and busy time, all counters."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import msgspec

from unity.collectors.hostfs import DEFAULT_PROC, read_text
from unity.sdk import Metric, Plugin, Sink

# /proc/diskstats counts sectors of 512 bytes whatever the device's own sector size.
SECTOR = 512


class DiskIOConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    devices: list[str] = []
    ignore_devices: tuple[str, ...] = ("loop*", "ram*")
    proc_root: str = DEFAULT_PROC


@dataclass(frozen=True, slots=True)
class DiskStats:
    device: str
    reads: int
    read_bytes: int
    read_ms: int
    writes: int
    written_bytes: int
    write_ms: int
    in_progress: int
    busy_ms: int


def parse_diskstats(text: str) -> list[DiskStats]:
    """Lines of 14 (kernel < 4.18), 18 (discards) or 20 fields (flushes), or the old 7."""
    stats = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 14:
            stats.append(
                DiskStats(
                    f[2],
                    int(f[3]),
                    int(f[5]) * SECTOR,
                    int(f[6]),
                    int(f[7]),
                    int(f[9]) * SECTOR,
                    int(f[10]),
                    int(f[11]),
                    int(f[12]),
                )
            )
        elif len(f) == 7:
            # Partitions on 2.6 kernels: reads, read sectors, writes, written sectors only.
            stats.append(
                DiskStats(
                    f[2], int(f[3]), int(f[4]) * SECTOR, 0, int(f[5]), int(f[6]) * SECTOR, 0, 0, 0
                )
            )
    return stats


class DiskIOPlugin(Plugin):
    id = "diskio"
    name = "Disk I/O"
    description = "Per block device: bytes and operations read and written, busy time."
    category = "system"
    Config = DiskIOConfig
    metrics = (
        Metric("diskio_read_bytes", "bytes", "counter", "bytes read"),
        Metric("diskio_written_bytes", "bytes", "counter", "bytes written"),
        Metric("diskio_reads_total", "", "counter", "read operations completed"),
        Metric("diskio_writes_total", "", "counter", "write operations completed"),
        Metric("diskio_read_time_seconds", "seconds", "counter", "time spent reading"),
        Metric("diskio_write_time_seconds", "seconds", "counter", "time spent writing"),
        Metric("diskio_busy_seconds", "seconds", "counter", "time the device had I/O in flight"),
        Metric("diskio_in_progress", "", "gauge", "I/O operations in flight"),
    )

    config: DiskIOConfig

    def collect(self, sink: Sink) -> None:
        cfg = self.config
        text = read_text(Path(cfg.proc_root, "diskstats"))
        if text is None:
            raise FileNotFoundError(f"{cfg.proc_root}/diskstats is missing")
        for st in parse_diskstats(text):
            if cfg.devices and not any(fnmatch.fnmatchcase(st.device, p) for p in cfg.devices):
                continue
            if any(fnmatch.fnmatchcase(st.device, p) for p in cfg.ignore_devices):
                continue
            labels = {"device": st.device}
            sink.add("diskio_read_bytes", st.read_bytes, labels)
            sink.add("diskio_written_bytes", st.written_bytes, labels)
            sink.add("diskio_reads_total", st.reads, labels)
            sink.add("diskio_writes_total", st.writes, labels)
            sink.add("diskio_read_time_seconds", st.read_ms / 1000, labels)
            sink.add("diskio_write_time_seconds", st.write_ms / 1000, labels)
            sink.add("diskio_busy_seconds", st.busy_ms / 1000, labels)
            sink.add("diskio_in_progress", st.in_progress, labels)
