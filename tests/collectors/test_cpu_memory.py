from __future__ import annotations

import psutil
import pytest

from tests.collectors.helpers import by_key, case, collect, key
from unity.collectors.plugins.cpu import CpuConfig, CpuPlugin
from unity.collectors.plugins.memory import MemoryConfig, MemoryPlugin

TICK = 100  # USER_HZ: /proc/stat counts in 1/100 s


def test_cpu_fixture_vm_counters_and_frequency_from_cpuinfo() -> None:
    root = case("cpu", "two-cores-vm")
    values = by_key(
        collect(CpuPlugin(CpuConfig(proc_root=str(root / "proc"), sys_root=str(root / "sys"))))
    )
    assert values[key("cpu_time_seconds", mode="user")] == pytest.approx(24111 / TICK)
    assert values[key("cpu_time_seconds", mode="steal")] == pytest.approx(882 / TICK)
    assert values[key("cpu_core_time_seconds", cpu="1", mode="system")] == pytest.approx(
        5510 / TICK
    )
    assert values[key("cpu_core_time_seconds", cpu="0", mode="iowait")] == pytest.approx(494 / TICK)
    assert values[key("cpu_context_switches_total")] == 11223344
    assert values[key("cpu_interrupts_total")] == 5817251
    assert values[key("cpu_soft_interrupts_total")] == 2468013
    assert values[key("cpu_cores_logical")] == 2
    assert values[key("cpu_load5")] == 0.55
    # No cpufreq in the VM's sysfs: the per-processor "cpu MHz" lines are used.
    assert values[key("cpu_frequency_hertz", cpu="0")] == pytest.approx(2793.438e6)
    assert values[key("cpu_frequency_hertz", cpu="1")] == pytest.approx(2793.438e6)


def test_cpu_fixture_cpufreq_wins_and_an_offline_core_has_no_frequency() -> None:
    root = case("cpu", "cpufreq-laptop")
    sink = collect(
        CpuPlugin(CpuConfig(proc_root=str(root / "proc"), sys_root=str(root / "sys"), percpu=False))
    )
    values = by_key(sink)
    assert values[key("cpu_frequency_hertz", cpu="0")] == 1.8e9
    assert key("cpu_frequency_hertz", cpu="1") not in values
    assert not any(s.name == "cpu_core_time_seconds" for s in sink.samples)


def test_cpu_counters_are_counters() -> None:
    kinds = {m.name: m.kind for m in CpuPlugin.metrics}
    assert kinds["cpu_time_seconds"] == kinds["cpu_context_switches_total"] == "counter"
    assert kinds["cpu_frequency_hertz"] == "gauge"


def test_cpu_on_the_live_host_obeys_invariants() -> None:
    sink = collect(CpuPlugin())
    values = by_key(sink)
    total = {s.labels["mode"]: s.value for s in sink.samples if s.name == "cpu_time_seconds"}
    per_core: dict[str, float] = {}
    for s in sink.samples:
        if s.name == "cpu_core_time_seconds":
            per_core[s.labels["mode"]] = per_core.get(s.labels["mode"], 0.0) + s.value
    assert values[key("cpu_cores_logical")] == psutil.cpu_count()
    cores = psutil.cpu_count() or 1
    for mode in ("user", "system", "idle"):
        # The total line is the sum of the core lines (read a moment apart: allow a tick each).
        assert abs(total[mode] - per_core[mode]) <= 0.05 * cores + total[mode] * 0.01
    assert values[key("cpu_context_switches_total")] > 0


def test_memory_fixture_with_swap_in_use() -> None:
    root = case("memory", "swap-in-use")
    values = by_key(collect(MemoryPlugin(MemoryConfig(proc_root=str(root / "proc")))))
    kib = 1024
    assert values[key("memory_total_bytes")] == 8_000_000 * kib
    assert values[key("memory_available_bytes")] == 5_000_000 * kib
    assert values[key("memory_used_bytes")] == (8_000_000 - 5_000_000) * kib
    # page cache as free(1) shows it: Cached + SReclaimable
    assert values[key("memory_cached_bytes")] == 3_300_000 * kib
    assert values[key("memory_used_percent")] == 37.5
    assert values[key("swap_total_bytes")] == 2_000_000 * kib
    assert values[key("swap_used_bytes")] == 500_000 * kib
    assert values[key("swap_used_percent")] == 25.0
    # pswpin/pswpout count 4 KiB pages
    assert values[key("swap_in_bytes")] == 1000 * 4096
    assert values[key("swap_out_bytes")] == 2500 * 4096


def test_memory_fixture_without_swap_reports_zero_not_an_error() -> None:
    root = case("memory", "no-swap")
    values = by_key(collect(MemoryPlugin(MemoryConfig(proc_root=str(root / "proc")))))
    assert values[key("swap_total_bytes")] == 0
    assert values[key("swap_used_percent")] == 0
    assert values[key("memory_used_percent")] == 50.0


def test_memory_on_the_live_host_obeys_invariants() -> None:
    values = by_key(collect(MemoryPlugin()))
    assert 0 < values[key("memory_available_bytes")] <= values[key("memory_total_bytes")]
    assert values[key("memory_used_bytes")] <= values[key("memory_total_bytes")]
    assert 0 <= values[key("memory_used_percent")] <= 100
    assert values[key("swap_used_bytes")] <= values[key("swap_total_bytes")]
