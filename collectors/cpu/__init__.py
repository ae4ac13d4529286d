"""CPU time per mode (counters), load averages and core counts."""

from __future__ import annotations

import os

import psutil

from sdk import Metric, Plugin, Sink

_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest")


class CpuPlugin(Plugin):
    id = "cpu"
    name = "CPU"
    description = "CPU time per mode (all cores), load averages and core counts."
    category = "system"
    metrics = (
        Metric("cpu_time_seconds", "seconds", "counter", "CPU time spent per mode, all cores"),
        Metric("cpu_load1", "", "gauge", "1-minute load average"),
        Metric("cpu_load5", "", "gauge", "5-minute load average"),
        Metric("cpu_load15", "", "gauge", "15-minute load average"),
        Metric("cpu_cores_logical", "", "gauge", "logical CPUs"),
    )

    def collect(self, sink: Sink) -> None:
        times = psutil.cpu_times()
        for mode in _MODES:
            value = getattr(times, mode, None)
            if value is not None:
                sink.add("cpu_time_seconds", value, {"mode": mode})
        load1, load5, load15 = os.getloadavg()
        sink.add("cpu_load1", load1)
        sink.add("cpu_load5", load5)
        sink.add("cpu_load15", load15)
        sink.add("cpu_cores_logical", psutil.cpu_count(logical=True) or 0)
