from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.fake_tool import calls, install
from tests.collectors.helpers import by_key, case, collect, key
from unity.collectors.plugins.gpu import GpuConfig, GpuError, GpuPlugin
from unity.collectors.plugins.sensors import SensorsConfig, SensorsError, SensorsPlugin


def test_sensors_desktop_hwmon_and_thermal_zones() -> None:
    root = case("sensors", "desktop")
    values = by_key(collect(SensorsPlugin(SensorsConfig(sys_root=str(root / "sys")))))
    temps = {
        (dict(k[1])["chip"], dict(k[1])["sensor"]): v
        for k, v in values.items()
        if k[0] == "sensors_temperature_celsius"
    }
    # _max and _crit are limits, not readings: exactly one reading per tempN_input.
    assert temps == {
        ("coretemp", "Package id 0"): 45.0,
        ("coretemp", "temp2"): 43.0,
        ("it87", "temp1"): 38.0,  # an old driver with its attributes under device/
        ("nvme", "Composite"): 35.85,
        ("nvme-hwmon4", "Composite"): 31.0,  # a second chip of the same name stays apart
        ("thermal_zone0", "x86_pkg_temp"): 46.0,  # thermal_zone1 has no reading: skipped
    }
    assert (
        values[key("sensors_temperature_crit_celsius", chip="coretemp", sensor="Package id 0")]
        == 100.0
    )
    assert values[key("sensors_temperature_crit_celsius", chip="nvme", sensor="Composite")] == 84.85
    assert values[key("sensors_fan_rpm", chip="nct6775", sensor="CPU Fan")] == 1200
    assert values[key("sensors_fan_rpm", chip="nct6775", sensor="fan2")] == 0  # stopped fan
    assert values[key("sensors_voltage_volts", chip="nct6775", sensor="+12V")] == pytest.approx(
        12.096
    )
    assert values[key("sensors_voltage_volts", chip="nct6775", sensor="in0")] == pytest.approx(0.84)
    # power1_average wins over power1_input: one power series, not two.
    assert values[key("sensors_power_watts", chip="nct6775", sensor="power1")] == pytest.approx(
        47.0
    )
    assert sum(1 for k in values if k[0] == "sensors_power_watts") == 1
    assert not any(k[0].startswith("battery_") for k in values)


def test_sensors_laptop_batteries_energy_and_charge_based() -> None:
    root = case("sensors", "laptop")
    values = by_key(collect(SensorsPlugin(SensorsConfig(sys_root=str(root / "sys")))))
    assert values[key("battery_capacity_percent", battery="BAT0")] == 60
    assert values[key("battery_energy_wh", battery="BAT0")] == 30.0
    assert values[key("battery_energy_full_wh", battery="BAT0")] == 50.0
    assert values[key("battery_power_watts", battery="BAT0")] == 10.0
    assert values[key("battery_voltage_volts", battery="BAT0")] == 12.0
    assert values[key("battery_discharging", battery="BAT0")] == 1
    # BAT1 reports charge (uAh) and current: energy = charge x voltage, capacity derived.
    assert values[key("battery_energy_wh", battery="BAT1")] == pytest.approx(22.0)
    assert values[key("battery_energy_full_wh", battery="BAT1")] == pytest.approx(44.0)
    assert values[key("battery_capacity_percent", battery="BAT1")] == pytest.approx(50.0)
    assert values[key("battery_power_watts", battery="BAT1")] == pytest.approx(11.0)
    assert values[key("battery_discharging", battery="BAT1")] == 0
    # An empty bay says nothing; a wireless mouse battery has capacity and status only.
    assert not any(dict(k[1]).get("battery") == "BAT2" for k in values)
    assert values[key("battery_capacity_percent", battery="hidpp_battery_0")] == 85
    assert values[key("power_supply_online", supply="AC")] == 0
    # The ACPI zone reports -274 C, the "no reading" marker: not a temperature.
    assert not any(k[0] == "sensors_temperature_celsius" for k in values)


def test_sensors_lm_sensors_json_counts_inputs_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = case("sensors", "lm-sensors-3.6.0") / "sensors.json"
    recorded = install(monkeypatch, tmp_path / "bin", "sensors", fixture)
    plugin = SensorsPlugin(SensorsConfig(lm_sensors=True, sys_root=str(tmp_path / "no-sys")))
    values = by_key(collect(plugin))
    assert calls(recorded) == [["-j"]]
    temps = {
        (dict(k[1])["chip"], dict(k[1])["sensor"]): v
        for k, v in values.items()
        if k[0] == "sensors_temperature_celsius"
    }
    assert temps == {
        ("coretemp-isa-0000", "Package id 0"): 52.0,
        ("coretemp-isa-0000", "Core 0"): 49.0,
        ("acpitz-acpi-0", "temp1"): 27.8,
        ("nct6798-isa-0290", "SYSTIN"): 34.0,
    }
    crit = key("sensors_temperature_crit_celsius", chip="coretemp-isa-0000", sensor="Core 0")
    assert values[crit] == 100.0
    assert values[key("sensors_fan_rpm", chip="nct6798-isa-0290", sensor="fan2")] == 1054
    assert values[key("sensors_voltage_volts", chip="amdgpu-pci-0300", sensor="vddgfx")] == 0.75
    assert values[key("sensors_power_watts", chip="amdgpu-pci-0300", sensor="PPT")] == 35.0
    # alarms, beeps, pulses, offsets and the intrusion switch are not readings
    assert len(values) == 4 + 2 + 1 + 2 + 1 + 1  # temps, crits (coretemp x2 + acpitz), ...


def test_sensors_lm_sensors_failure_is_an_error_not_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.txt"
    out.write_text("No sensors found!\n")
    install(monkeypatch, tmp_path / "bin", "sensors", out, exit_code=1)
    plugin = SensorsPlugin(SensorsConfig(lm_sensors=True, sys_root=str(tmp_path)))
    with pytest.raises(SensorsError, match="exited 1"):
        collect(plugin)


def test_gpu_two_gpus_with_missing_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = install(
        monkeypatch, tmp_path / "bin", "nvidia-smi", case("gpu", "two-gpus") / "query.csv"
    )
    values = by_key(collect(GpuPlugin()))
    [argv] = calls(recorded)
    assert argv[0].startswith("--query-gpu=index,uuid,name,utilization.gpu,")
    assert argv[1] == "--format=csv,noheader,nounits"
    rtx = {
        "gpu": "0",
        "uuid": "GPU-5f2c1d9e-8a3b-4c7d-9e1f-2a3b4c5d6e7f",
        "name": "NVIDIA GeForce RTX 3090",
    }
    t4 = {"gpu": "1", "uuid": "GPU-0a1b2c3d-4e5f-6789-abcd-ef0123456789", "name": "Tesla T4"}
    assert values[key("gpu_utilization_percent", **rtx)] == 87
    assert values[key("gpu_memory_total_bytes", **rtx)] == 24576 * 1024 * 1024
    assert values[key("gpu_memory_used_bytes", **rtx)] == 18432 * 1024 * 1024
    assert values[key("gpu_temperature_celsius", **rtx)] == 71
    assert values[key("gpu_power_watts", **rtx)] == 312.45
    assert values[key("gpu_clock_sm_hertz", **rtx)] == 1905e6
    assert values[key("gpu_fan_percent", **rtx)] == 65
    assert values[key("gpu_utilization_percent", **t4)] == 0
    # The T4 has no fan: [N/A] is no value, not zero.
    assert key("gpu_fan_percent", **t4) not in values
    assert values[key("gpu_power_limit_watts", **t4)] == 70


def test_gpu_not_supported_fields_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, tmp_path / "bin", "nvidia-smi", case("gpu", "not-supported") / "query.csv")
    names = {s.name for s in collect(GpuPlugin()).samples}
    assert "gpu_power_watts" not in names and "gpu_power_limit_watts" not in names
    assert {"gpu_utilization_percent", "gpu_fan_percent", "gpu_clock_memory_hertz"} <= names


def test_gpu_driver_failure_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = case("gpu", "driver-missing")
    code = int((folder / "exit_code").read_text())
    install(monkeypatch, tmp_path / "bin", "nvidia-smi", folder / "stdout.txt", exit_code=code)
    with pytest.raises(GpuError, match="exited 9: NVIDIA-SMI has failed"):
        collect(GpuPlugin())


def test_gpu_missing_binary_and_malformed_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(GpuError, match="not found"):
        collect(GpuPlugin(GpuConfig(command=str(tmp_path / "nvidia-smi"))))
    bad = tmp_path / "bad.csv"
    bad.write_text("0, GPU-x, Some GPU, 12\n")
    install(monkeypatch, tmp_path / "bin", "nvidia-smi", bad)
    with pytest.raises(GpuError, match="row 1 has 4 fields"):
        collect(GpuPlugin())
