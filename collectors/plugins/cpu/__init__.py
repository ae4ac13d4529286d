"""CPU time per mode (counters, total and per core), context switches, interrupts, frequency, load.

Utilisation in percent is a rate of ``cpu_time_seconds``, computed at query time, not here.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import psutil

from unity.collectors.hostfs import DEFAULT_PROC, DEFAULT_SYS, procfs, read_number, read_text
from unity.sdk import Metric, Plugin, Sink

_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest")


class CpuConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    percpu: bool = True
    frequency: bool = True
    proc_root: str = DEFAULT_PROC
    sys_root: str = DEFAULT_SYS


class CpuPlugin(Plugin):
    id = "cpu"
    name = "CPU"
    description = "CPU time per mode (total and per core), context switches, frequency, load."
    category = "system"
    Config = CpuConfig
    metrics = (
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

    def collect(self, sink: Sink) -> None:
        cfg = self.config
        with procfs(cfg.proc_root):
            total = psutil.cpu_times()
            cores = psutil.cpu_times(percpu=True)
            stats = psutil.cpu_stats()
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
