"""smart: smartctl JSON per device, scan, standby, unreadable devices, every recorded answer."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.argv_tool import calls, install
from unity.collectors.command import CommandError
from unity.collectors.plugins.smart import (
    SmartConfig,
    SmartDevice,
    SmartError,
    SmartPlugin,
    failure,
    health_of,
    nvme_warnings,
    readings,
    scan,
    standby,
)
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "smart"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "smartctl"


def answers(**devices: str) -> dict[str, Path | tuple[Path, int]]:
    """smartctl's argv -> file, the exit status taken from the file as smartctl would exit."""
    table: dict[str, Path | tuple[Path, int]] = {"--scan-open -j": DATA / "scan-open.json"}
    for spec, name in devices.items():
        device, kind = spec.rsplit("_", 1)
        path = DATA / name
        status = json.loads(path.read_text())["smartctl"]["exit_status"]
        table[f"-a -j -d {kind} -n standby /dev/{device}"] = (path, status)
    return table


FOUR = {
    "sda_sat": "ata-sda.json",
    "sdb_sat": "usb-sdb-no-status.json",
    "nvme0_nvme": "nvme0-critical-warning.json",
    "sdd_scsi": "sdd-open-failed.json",
}


def test_scan_then_each_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = install(monkeypatch, tmp_path, "smartctl", answers(**FOUR))
    plugin = SmartPlugin()
    sink = collect(plugin)
    values = by_key(sink)
    sda = {"device": "/dev/sda", "type": "sat", "model": "WDC WD40EFRX-68N32N0"}
    sda["serial"] = "WD-WCC7K1234567"
    # Exit 68 (a command failed, errors logged) still carries a full answer: it is read.
    assert values[key("smart_health_passed", **sda)] == 1
    assert values[key("smart_temperature_celsius", **sda)] == 36
    assert values[key("smart_power_on_seconds", **sda)] == 45327 * 3600
    assert values[key("smart_reallocated_sectors", **sda)] == 8
    assert values[key("smart_pending_sectors", **sda)] == 2
    assert values[key("smart_crc_errors_total", **sda)] == 13
    nvme = {"device": "/dev/nvme0", "type": "nvme", "model": "Samsung SSD 970 EVO Plus 1TB"}
    nvme["serial"] = "S4EWNX0R123456A"
    assert values[key("smart_health_passed", **nvme)] == 0
    assert values[key("smart_nvme_percentage_used_percent", **nvme)] == 103
    assert values[key("smart_nvme_available_spare_percent", **nvme)] == 4
    assert values[key("smart_nvme_written_bytes", **nvme)] == 234567890 * 512000
    assert values[key("smart_uncorrected_errors_total", **nvme)] == 12
    warnings = {dict(k[1])["warning"]: v for k, v in values.items() if k[0] == "smart_nvme_warning"}
    assert warnings == {
        "available_spare_low": 1,
        "temperature": 0,
        "reliability_degraded": 1,
        "read_only": 0,
        "volatile_backup_failed": 0,
        "persistent_memory_read_only": 0,
    }
    assert values[key("smart_devices")] == 4
    assert values[key("smart_devices_unreadable")] == 1
    # Every device was asked with its scanned type, without a shell, never waking a sleeper.
    assert calls(recorded)[0] == ["--scan-open", "-j"]
    assert ["-a", "-j", "-d", "sat", "-n", "standby", "/dev/sdb"] in calls(recorded)
    health = plugin.health()
    assert health is not None and health.status == "degraded"
    assert "/dev/sdd: Smartctl open device: /dev/sdd failed: No such device" in health.message
    failing = [e for e in sink.events if e.kind == "smart_failing"]
    assert [(e.data["device"], e.severity) for e in failing] == [("/dev/nvme0", "critical")]
    [inventory] = [e for e in sink.events if e.kind == "smart_inventory"]
    assert {d["device"]: d["health"] for d in inventory.data["devices"]} == {
        "/dev/sda": "passed",
        "/dev/sdb": "unknown",
        "/dev/nvme0": "failed",
    }
    # A second identical run repeats the numbers, not the events.
    again = collect(plugin)
    assert again.events == [] and len(again.samples) == len(sink.samples)


def test_missing_smart_status_is_unknown_never_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = json.loads((DATA / "usb-sdb-no-status.json").read_text())
    assert health_of(data) == "unknown"
    assert "smart_health_passed" not in readings(data)
    assert readings(data)["smart_temperature_celsius"] == 31
    install(monkeypatch, tmp_path, "smartctl", answers(sdb_sat="usb-sdb-no-status.json"))
    plugin = SmartPlugin(SmartConfig(devices=(SmartDevice("/dev/sdb", "sat"),)))
    sink = collect(plugin)
    assert not any(s.name == "smart_health_passed" for s in sink.samples)
    assert not any(e.kind == "smart_failing" for e in sink.events)
    assert plugin.health() is None


def test_standby_disk_is_left_asleep_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, tmp_path, "smartctl", answers(sda_sat="ata-sda-standby.json"))
    plugin = SmartPlugin(SmartConfig(devices=(SmartDevice("/dev/sda", "sat"),)))
    values = by_key(collect(plugin))
    assert values == {
        key("smart_devices"): 1,
        key("smart_devices_unreadable"): 0,
        key("smart_devices_standby"): 1,
    }
    assert plugin.health() is None


def test_every_device_unreadable_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, tmp_path, "smartctl", answers(sdd_scsi="sdd-open-failed.json"))
    plugin = SmartPlugin(SmartConfig(devices=(SmartDevice("/dev/sdd", "scsi"),)))
    with pytest.raises(SmartError, match="no device readable: /dev/sdd: Smartctl open device"):
        collect(plugin)


def test_garbage_from_one_device_does_not_fail_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("smartctl 7.3 2022-02-28 r5338 [x86_64-linux] (local build)\n")
    table = answers(sda_sat="ata-sda.json")
    table["-a -j -d sat -n standby /dev/sdb"] = garbage
    install(monkeypatch, tmp_path / "bin", "smartctl", table)
    plugin = SmartPlugin(
        SmartConfig(devices=(SmartDevice("/dev/sda", "sat"), SmartDevice("/dev/sdb", "sat")))
    )
    values = by_key(collect(plugin))
    assert values[key("smart_devices_unreadable")] == 1
    assert any(k[0] == "smart_temperature_celsius" for k in values)
    health = plugin.health()
    assert health is not None and "/dev/sdb: not smartctl JSON" in health.message


def test_missing_tool_is_unavailable_and_a_failed_run(tmp_path: Path) -> None:
    plugin = SmartPlugin(SmartConfig(command=(str(tmp_path / "smartctl"),)))
    assert plugin.unavailable() == f"{tmp_path / 'smartctl'} not executable"
    with pytest.raises(CommandError):
        collect(plugin)
    assert SmartPlugin(SmartConfig(command=("no-such-smartctl",))).unavailable() == (
        "no-such-smartctl not found on PATH"
    )


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="'devics'"):
        SmartPlugin.parse_config({"devics": []})
    with pytest.raises(ConfigError, match=r"'devices\[0\]\.kind'"):
        SmartPlugin.parse_config({"devices": [{"name": "/dev/sda", "kind": "sat"}]})
    config = SmartPlugin.parse_config(
        {"command": ["sudo", "-n", "smartctl"], "devices": [{"name": "/dev/sdb", "type": "sat"}]}
    )
    assert config == SmartConfig(
        command=("sudo", "-n", "smartctl"), devices=(SmartDevice("/dev/sdb", "sat"),)
    )


def shared(name: str) -> dict[str, object]:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    data: dict[str, object] = json.loads((SHARED / name).read_text())
    return data


# Recorded answers of real smartctl 6.7-7.4 (../shared/fixtures/SOURCES.md).
DEVICE_FILES = {
    "netdata-nvme0.json": ("passed", 39),
    "netdata-nvme1.json": ("passed", 36),
    "netdata-sat-hdd-sda.json": ("passed", 49),
    "netdata-sat-ssd-sdc.json": ("passed", 27),
    "netdata-scsi-sda.json": ("passed", 34),
    "scrutiny-ata-full-860evo.json": ("passed", 36),
    "scrutiny-intel-raid-volume.json": ("unknown", None),
    "scrutiny-megaraid0.json": ("passed", 36),
    "scrutiny-nvme-failed.json": ("passed", 35),
    "scrutiny-sas-seagate.json": ("passed", 31),
    "scrutiny-sat-no-smart-status.json": ("unknown", 29),
    "scrutiny-usb-jmicron-failing.json": ("failed", 25),
    "telegraf-megaraid.json": ("passed", 25),
    "telegraf-nvme.json": ("passed", 48),
    "telegraf-scsi.json": ("passed", 24),
    "telegraf-scsi_extended.json": ("passed", 24),
    "telegraf-usb.json": ("passed", None),
    "scrutiny-info-smart-support-bool.json": ("unknown", None),
}
SCAN_FILES = {
    "netdata-nvme-scan.json": 1,
    "netdata-sat-scan.json": 2,
    "netdata-scsi-scan.json": 1,
    "telegraf-scan-megaraid.json": 10,
}


@pytest.mark.parametrize("name", sorted(DEVICE_FILES))
def test_recorded_device_answers(name: str) -> None:
    data = shared(name)
    status, temperature = DEVICE_FILES[name]
    assert failure(data) is None and not standby(data)
    assert health_of(data) == status
    values = readings(data)
    assert values.get("smart_temperature_celsius") == temperature
    assert ("smart_health_passed" in values) == (status != "unknown")
    # Packed raw values (194 "29 (0 18 0 0 0)", 9 "2725 (151 234 0)") are read as smartctl shows.
    assert all(0 <= v < 1e15 for v in values.values())


def test_recorded_awkward_answers() -> None:
    jmicron = readings(shared("scrutiny-usb-jmicron-failing.json"))
    assert jmicron["smart_health_passed"] == 0
    assert jmicron["smart_reallocated_sectors"] == 1975
    assert jmicron["smart_pending_sectors"] == 8
    packed = readings(shared("scrutiny-sat-no-smart-status.json"))
    assert packed["smart_power_on_seconds"] == 2725 * 3600
    assert readings(shared("netdata-scsi-sda.json"))["smart_power_on_seconds"] == (
        1641 * 3600 + 22 * 60
    )
    assert readings(shared("scrutiny-nvme-failed.json"))["smart_uncorrected_errors_total"] == 7
    assert nvme_warnings(shared("telegraf-nvme.json")) == dict.fromkeys(
        (
            "available_spare_low",
            "temperature",
            "reliability_degraded",
            "read_only",
            "volatile_backup_failed",
            "persistent_memory_read_only",
        ),
        False,
    )
    assert failure(shared("scrutiny-exit2-no-device.json")) == (
        "Smartctl open device: /dev/sda failed: \\\\.\\PhysicalDrive0: Open failed, Error=5"
    )


@pytest.mark.parametrize("name", sorted(SCAN_FILES))
def test_recorded_scans(name: str) -> None:
    found = scan(shared(name))
    assert len(found) == SCAN_FILES[name]
    assert len({(d.name, d.type) for d in found}) == len(found)  # megaraid disks share a name


def test_every_recorded_smartctl_file_is_covered() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    # nvme-cli's `nvme smart-log -o json` is another tool's output, not smartctl's.
    others = {"netdata-nvme-cli-v2.11-smart-log.json", "scrutiny-exit2-no-device.json"}
    assert {p.name for p in SHARED.glob("*.json")} == {*DEVICE_FILES, *SCAN_FILES, *others}


REAL = shutil.which("smartctl")


@pytest.mark.skipif(REAL is None, reason="smartctl (smartmontools) is not installed")
def test_real_smartctl(tmp_path: Path) -> None:
    # The real tool: whatever this host's scan finds is read without failing the run.
    listed = json.loads(
        subprocess.run(
            ["smartctl", "--scan-open", "-j"], capture_output=True, check=False, timeout=30
        ).stdout
    )
    if len(listed.get("devices") or []) == 0:
        assert by_key(collect(SmartPlugin()))[key("smart_devices")] == 0
    # A file is no disk: smartctl cannot tell its type (exit 1), so no device is readable.
    fake = tmp_path / "not-a-disk"
    fake.write_bytes(bytes(4096))
    lost = SmartPlugin(SmartConfig(devices=(SmartDevice(str(fake)),)))
    with pytest.raises(SmartError, match=f"no device readable: {fake}: Unable to detect device"):
        collect(lost)
    # Forced through SAT it answers like a bridge that passes no SMART data: exit 4, no
    # smart_status. Unknown, never FAILED.
    bridge = SmartPlugin(SmartConfig(devices=(SmartDevice(str(fake), "sat"),)))
    sink = collect(bridge)
    assert not any(s.name == "smart_health_passed" for s in sink.samples)
    [inventory] = sink.events
    assert inventory.data["devices"][0]["health"] == "unknown"
