from __future__ import annotations

import psutil
import pytest

from unity.collectors.plugins.cpu import CpuPlugin
from unity.collectors.plugins.memory import MemoryPlugin
from unity.sdk import Metric, Plugin, Sink, UndeclaredMetricError
from unity.sdk.discovery import discover
from unity.sdk.testing import collect


def test_cpu_on_the_live_host_obeys_invariants() -> None:
    sink = collect(CpuPlugin())
    times = {s.labels["mode"]: s for s in sink.samples if s.name == "cpu_time_seconds"}
    assert {"user", "system", "idle"} <= set(times)
    assert all(s.kind == "counter" and s.unit == "seconds" and s.value >= 0 for s in times.values())
    cores = next(s for s in sink.samples if s.name == "cpu_cores_logical")
    assert cores.value == psutil.cpu_count()


def test_memory_on_the_live_host_obeys_invariants() -> None:
    values = {s.name: s.value for s in collect(MemoryPlugin()).samples}
    assert 0 < values["memory_available_bytes"] <= values["memory_total_bytes"]
    assert values["memory_used_bytes"] <= values["memory_total_bytes"]
    assert 0 <= values["memory_used_percent"] <= 100


def test_every_emitted_metric_is_declared_once() -> None:
    for cls in (CpuPlugin, MemoryPlugin):
        names = [m.name for m in cls.metrics]
        assert len(names) == len(set(names))
        assert {s.name for s in collect(cls()).samples} <= set(names)


def test_undeclared_metric_is_an_error() -> None:
    class Sloppy(Plugin):
        id = "sloppy"
        metrics = (Metric("declared", "bytes"),)

        def collect(self, sink: Sink) -> None:
            sink.add("not_declared", 1)

    with pytest.raises(UndeclaredMetricError, match="not_declared"):
        collect(Sloppy())


def test_builtins_are_discovered_by_entry_point() -> None:
    found = discover()
    assert found["cpu"] is CpuPlugin and found["memory"] is MemoryPlugin
