"""CPU usage in percent and CPU time per mode (total and per core), context switches,
interrupts, frequency, load.

Usage is the share of CPU time per mode between this run and the previous one (never a sleep
inside a run), so the first run of a collector has the counters but no percentages yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import psutil

from unity.collectors.hostfs import DEFAULT_PROC, DEFAULT_SYS, procfs, read_number, read_text
from unity.sdk import Metric, Plugin, Sink

_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest")
# Linux counts guest time inside user (and guest_nice inside nice) as well.
_GUEST = frozenset({"guest", "guest_nice"})
# Waiting for I/O is idle time, as top, psutil and Netdata count it.
_NOT_BUSY = frozenset({"idle", "iowait"})

Times = dict[str, float]


class CpuConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    percpu: bool = True
    frequency: bool = True
    proc_root: str = DEFAULT_PROC
    sys_root: str = DEFAULT_SYS


class CpuPlugin(Plugin):
    id = "cpu"
    name = "CPU"
    description = (
        "CPU usage % and time per mode (total and per core), context switches, frequency, load."
    )
    category = "system"
    Config = CpuConfig
    metrics = (
        Metric("cpu_usage_percent", "percent", "gauge", "share of CPU time per mode, and busy"),
        Metric("cpu_core_usage_percent", "percent", "gauge", "share of a core's time per mode"),
        Metric("cpu_time_seconds", "seconds", "counter", "CPU time spent per mode, all cores"),
        Metric("cpu_core_time_seconds", "seconds", "counter", "CPU time per core and mode"),
        Metric("cpu_context_switches_total", "", "counter", "context switches since boot"),
        Metric("cpu_interrupts_total", "", "counter", "hardware interrupts since boot"),
        Metric("cpu_soft_interrupts_total", "", "counter", "software interrupts since boot"),
        Metric("cpu_frequency_hertz", "hertz", "gauge", "current frequency per core"),
        Metric("cpu_load1", "", "gauge", "1-minute load average"),
        Metric("cpu_load5", "", "gauge", "5-minute load average"),
        Metric("cpu_load15", "", "gauge", "15-minute load average"),
        Metric("cpu_cores_logical", "", "gauge", "logical CPUs"),
    )

    config: CpuConfig
    # The previous run's readings, for usage over the interval.
    _last: tuple[Times, list[Times]] | None = None

    def collect(self, sink: Sink) -> None:
        cfg = self.config
        with procfs(cfg.proc_root):
            total = psutil.cpu_times()
            cores = psutil.cpu_times(percpu=True)
            stats = psutil.cpu_stats()
        now = (_times(total), [_times(core) for core in cores])
        if self._last is not None:
            self._usage(sink, self._last, now)
        self._last = now
        for mode in _MODES:
            value = getattr(total, mode, None)
            if value is not None:
                sink.add("cpu_time_seconds", value, {"mode": mode})
        if cfg.percpu:
            for index, times in enumerate(cores):
                for mode in _MODES:
                    value = getattr(times, mode, None)
                    if value is not None:
                        sink.add("cpu_core_time_seconds", value, {"cpu": str(index), "mode": mode})
        sink.add("cpu_context_switches_total", stats.ctx_switches)
        sink.add("cpu_interrupts_total", stats.interrupts)
        sink.add("cpu_soft_interrupts_total", stats.soft_interrupts)
        sink.add("cpu_cores_logical", len(cores))
        loadavg = read_text(Path(cfg.proc_root, "loadavg"))
        if loadavg is None:
            raise FileNotFoundError(f"{cfg.proc_root}/loadavg is missing")
        load1, load5, load15 = (float(v) for v in loadavg.split()[:3])
        sink.add("cpu_load1", load1)
        sink.add("cpu_load5", load5)
        sink.add("cpu_load15", load15)
        if cfg.frequency:
            for cpu, hertz in frequencies(cfg.sys_root, cfg.proc_root, len(cores)).items():
                sink.add("cpu_frequency_hertz", hertz, {"cpu": cpu})

    def _usage(
        self, sink: Sink, before: tuple[Times, list[Times]], after: tuple[Times, list[Times]]
    ) -> None:
        for mode, percent in usage(before[0], after[0]).items():
            sink.add("cpu_usage_percent", percent, {"mode": mode})
        # A core going offline or online renumbers the list: skip that run's per-core shares.
        if self.config.percpu and len(before[1]) == len(after[1]):
            for index, (old, new) in enumerate(zip(before[1], after[1], strict=True)):
                for mode, percent in usage(old, new).items():
                    sink.add("cpu_core_usage_percent", percent, {"cpu": str(index), "mode": mode})


def _times(reading: Any) -> Times:
    return {mode: float(value) for mode, value in reading._asdict().items()}


def usage(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Percent of CPU time per mode between two readings, plus ``busy`` (neither idle nor
    waiting for I/O); empty when no time passed (or the counters went back)."""
    spent_by_mode = {mode: max(after[mode] - before.get(mode, 0.0), 0.0) for mode in after}
    spent = sum(v for mode, v in spent_by_mode.items() if mode not in _GUEST)
    if spent <= 0:
        return {}
    shares = {mode: 100.0 * spent_by_mode[mode] / spent for mode in _MODES if mode in spent_by_mode}
    idle = sum(spent_by_mode.get(mode, 0.0) for mode in _NOT_BUSY)
    shares["busy"] = min(max(100.0 * (spent - idle) / spent, 0.0), 100.0)
    return shares


def frequencies(sys_root: str, proc_root: str, cores: int) -> dict[str, float]:
    """Current frequency per core: cpufreq in sysfs (kHz), else ``cpu MHz`` in /proc/cpuinfo."""
    found: dict[str, float] = {}
    for index in range(cores):
        base = Path(sys_root, "devices/system/cpu", f"cpu{index}", "cpufreq")
        khz = read_number(base / "scaling_cur_freq")
        if khz is None:
            khz = read_number(base / "cpuinfo_cur_freq")
        if khz is not None and khz > 0:
            found[str(index)] = khz * 1000
    if found:
        return found
    # VMs and containers often lack cpufreq; /proc/cpuinfo has a per-processor "cpu MHz".
    cpuinfo = read_text(Path(proc_root, "cpuinfo")) or ""
    processor = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            processor = value.strip()
        elif key == "cpu MHz" and processor is not None:
            try:
                found[processor] = float(value) * 1_000_000
            except ValueError:
                continue
    return found
