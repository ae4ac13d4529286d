"""CPU usage in percent: shares of CPU time per mode between two runs, total and per core."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from tests.collectors.helpers import by_key, case, collect, key
from unity.collectors.plugins.cpu import CpuConfig, CpuPlugin

MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _proc(tmp_path: Path, name: str) -> Path:
    """A proc root whose files are replaced by the named fixture's, as time passes."""
    root = tmp_path / "proc"
    root.mkdir(exist_ok=True)
    for entry in (case("cpu", name) / "proc").iterdir():
        shutil.copy(entry, root / entry.name)
    return root


def test_usage_over_ten_seconds_of_a_two_core_vm(tmp_path: Path) -> None:
    root = _proc(tmp_path, "two-cores-vm")
    plugin = CpuPlugin(CpuConfig(proc_root=str(root), sys_root=str(tmp_path / "sys")))
    first = collect(plugin)
    # One reading is no interval: counters only, no percentages invented.
    assert not [s for s in first.samples if s.name.endswith("usage_percent")]

    _proc(tmp_path, "two-cores-vm-10s-later")
    values = by_key(collect(plugin))
    # 2000 ticks passed on two cores: user +900 (100 of them guest), system +300, idle +650,
    # iowait +50, softirq +30, steal +70.
    expected_total = {
        "user": 45.0,
        "nice": 0.0,
        "system": 15.0,
        "idle": 32.5,
        "iowait": 2.5,
        "irq": 0.0,
        "softirq": 1.5,
        "steal": 3.5,
        "guest": 5.0,
        "busy": 65.0,
    }
    for mode, percent in expected_total.items():
        assert values[key("cpu_usage_percent", mode=mode)] == pytest.approx(percent), mode
    core0 = {"user": 30.0, "system": 10.0, "idle": 50.0, "iowait": 5.0, "steal": 3.0, "busy": 45.0}
    core1 = {"user": 60.0, "system": 20.0, "idle": 15.0, "guest": 10.0, "busy": 85.0}
    for cpu, expected in (("0", core0), ("1", core1)):
        for mode, percent in expected.items():
            found = values[key("cpu_core_usage_percent", cpu=cpu, mode=mode)]
            assert found == pytest.approx(percent), (cpu, mode)


def test_counters_that_went_back_give_no_percentages(tmp_path: Path) -> None:
    root = _proc(tmp_path, "two-cores-vm-10s-later")
    plugin = CpuPlugin(CpuConfig(proc_root=str(root), sys_root=str(tmp_path / "sys")))
    collect(plugin)
    _proc(tmp_path, "two-cores-vm")  # a restored snapshot: every counter is lower
    sink = collect(plugin)
    assert not [s for s in sink.samples if s.name.endswith("usage_percent")]
    assert any(s.name == "cpu_time_seconds" for s in sink.samples)


def test_usage_without_percpu_has_only_the_total(tmp_path: Path) -> None:
    root = _proc(tmp_path, "two-cores-vm")
    plugin = CpuPlugin(CpuConfig(proc_root=str(root), sys_root=str(tmp_path), percpu=False))
    collect(plugin)
    _proc(tmp_path, "two-cores-vm-10s-later")
    names = {s.name for s in collect(plugin).samples}
    assert "cpu_usage_percent" in names and "cpu_core_usage_percent" not in names


def test_usage_on_the_live_host_obeys_invariants() -> None:
    plugin = CpuPlugin()
    collect(plugin)
    # Burn a little CPU so that time passes on at least one core.
    deadline = psutil.cpu_times().user + 0.05
    while psutil.cpu_times().user < deadline:
        sum(i * i for i in range(10_000))
    sink = collect(plugin)
    total = {s.labels["mode"]: s.value for s in sink.samples if s.name == "cpu_usage_percent"}
    assert 0.0 <= total["busy"] <= 100.0
    assert sum(total[m] for m in MODES if m in total) == pytest.approx(100.0)
    assert total["busy"] == pytest.approx(100.0 - total["idle"] - total["iowait"])
    cores = {s.labels["cpu"] for s in sink.samples if s.name == "cpu_core_usage_percent"}
    assert cores == {str(i) for i in range(psutil.cpu_count() or 1)}
    declared = {m.name: (m.unit, m.kind) for m in CpuPlugin.metrics}
    assert declared["cpu_usage_percent"] == ("percent", "gauge")
    assert declared["cpu_core_usage_percent"] == ("percent", "gauge")
