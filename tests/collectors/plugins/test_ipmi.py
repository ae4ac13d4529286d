"""ipmi: sdr elist, chassis, SEL and DCMI through a fake ipmitool; the password via -E only."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.argv_tool import calls, install
from unity.collectors.plugins.ipmi import (
    IpmiConfig,
    IpmiError,
    IpmiPlugin,
    dcmi_watts,
    parse_sdr,
)
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "ipmi"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "ipmi"
ANSWERS = {
    "sdr elist": DATA / "sdr-elist.txt",
    "chassis status": DATA / "chassis-status.txt",
    "sel info": DATA / "sel-info.txt",
    "dcmi power reading": DATA / "dcmi-power-reading.txt",
}


def test_sensors_chassis_sel_and_dcmi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = install(monkeypatch, tmp_path, "ipmitool", ANSWERS)
    plugin = IpmiPlugin(IpmiConfig(dcmi=True))
    sink = collect(plugin)
    values = by_key(sink)
    assert calls(recorded) == [
        ["sdr", "elist"],
        ["chassis", "status"],
        ["sel", "info"],
        ["dcmi", "power", "reading"],
    ]
    assert values[key("ipmi_temperature_celsius", sensor="CPU1 Temp")] == 47
    assert values[key("ipmi_fan_rpm", sensor="FAN2")] == 300
    assert values[key("ipmi_voltage_volts", sensor="12V")] == 12.19
    assert values[key("ipmi_power_watts", sensor="PS1 Input Power")] == 184
    # "No Reading" rows are neither a value nor a status.
    assert key("ipmi_fan_rpm", sensor="FAN3") not in values
    assert key("ipmi_sensor_status", sensor="FAN3") not in values
    assert values[key("ipmi_sensor_status", sensor="FAN2")] == 2
    assert values[key("ipmi_sensor_status", sensor="VBAT")] == 1
    assert values[key("ipmi_sensor_status", sensor="PS2 Status")] == 2
    assert values[key("ipmi_chassis_power_on")] == 1
    assert values[key("ipmi_sel_entries")] == 37
    assert values[key("ipmi_sel_used_percent")] == 5
    assert values[key("ipmi_dcmi_power_watts")] == 212
    [alerts] = sink.events
    assert alerts.kind == "ipmi_sensor_alerts" and alerts.severity == "critical"
    assert alerts.data["sensors"] == {
        "FAN2": "cr: 300 RPM",
        "VBAT": "nc: 2.78 Volts",
        "PS2 Status": "cr: Presence detected, Power Supply AC lost",
    }
    assert collect(plugin).events == []


def test_new_sel_entries_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sel = tmp_path / "sel.txt"
    sel.write_text((DATA / "sel-info.txt").read_text())
    install(monkeypatch, tmp_path / "bin", "ipmitool", {**ANSWERS, "sel info": sel})
    plugin = IpmiPlugin()
    collect(plugin)
    sel.write_text(sel.read_text().replace("Entries          : 37", "Entries          : 39"))
    [event] = collect(plugin).events
    assert (event.kind, event.message) == (
        "ipmi_sel_new_entries",
        "2 new event log entries (39 in all)",
    )


def test_remote_bmc_password_only_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake ipmitool that records argv and the IPMI_PASSWORD it was given.
    folder = tmp_path / "bin"
    folder.mkdir()
    seen = tmp_path / "seen.jsonl"
    script = folder / "ipmitool"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "seen = [sys.argv[1:], os.environ.get('IPMI_PASSWORD')]\n"
        f"open({str(seen)!r}, 'a').write(json.dumps(seen) + '\\n')\n"
        f"sys.stdout.write(open({str(DATA / 'sdr-elist.txt')!r}).read())\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    secret = tmp_path / "bmc-password"
    secret.write_text("hunter2-bmc\n")
    monkeypatch.delenv("IPMI_PASSWORD", raising=False)
    plugin = IpmiPlugin(
        IpmiConfig(
            host="10.0.0.5", username="ADMIN", password_file=str(secret), chassis=False, sel=False
        )
    )
    assert plugin.unavailable() is None  # remote: no /dev/ipmi0 needed
    collect(plugin)
    [(argv, password)] = [json.loads(line) for line in seen.read_text().splitlines()]
    assert argv == ["-I", "lanplus", "-H", "10.0.0.5", "-U", "ADMIN", "-E", "sdr", "elist"]
    assert password == "hunter2-bmc"
    assert "hunter2-bmc" not in " ".join(argv)


def test_partial_failure_degrades_and_empty_sdr_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("Get Chassis Power Status failed: Invalid command\n")
    install(monkeypatch, tmp_path / "a", "ipmitool", {**ANSWERS, "chassis status": (broken, 1)})
    plugin = IpmiPlugin()
    values = by_key(collect(plugin))
    assert values[key("ipmi_sel_entries")] == 37
    health = plugin.health()
    assert health is not None and health.status == "degraded"
    assert health.message == "ipmitool exited 1: Get Chassis Power Status failed: Invalid command"
    empty = tmp_path / "empty.txt"
    empty.write_text("Unable to send command: Invalid argument\n")
    install(monkeypatch, tmp_path / "b", "ipmitool", {"sdr elist": empty})
    with pytest.raises(IpmiError, match="listed no sensors"):
        collect(IpmiPlugin())


def test_unavailable_without_a_bmc() -> None:
    assert IpmiPlugin(IpmiConfig(command=("no-ipmitool",))).unavailable() == (
        "no-ipmitool not found on PATH"
    )
    local = IpmiPlugin(IpmiConfig(command=(sys.executable,)))
    if not any(Path(d).exists() for d in ("/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0")):
        assert local.unavailable() == (
            "no /dev/ipmi0 (no BMC, or ipmi_si and ipmi_devintf not loaded) and no host"
        )


def test_config_refuses_unknown_keys_and_a_password() -> None:
    with pytest.raises(ConfigError, match="'password'"):
        IpmiPlugin.parse_config({"host": "10.0.0.5", "password": "in-the-file"})


def shared(name: str) -> str:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    return (SHARED / name).read_text()


def test_recorded_sdr_elist_with_noise() -> None:
    sensors = {s.name: s for s in parse_sdr(shared("telegraf-ipmitool-sdr-elist-v2-curated.txt"))}
    assert len(sensors) == 7  # the "Unable to send command" lines are not sensors
    assert (sensors["Fan1"].metric, sensors["Fan1"].value) == ("ipmi_fan_rpm", 5040)
    assert sensors["Inlet Temp"].value == 25
    assert (sensors["Current 1"].metric, sensors["Current 1"].value) == (
        "ipmi_current_amperes",
        7.2,
    )
    assert sensors["Power Supply 1"].value == 110  # "110 Watts, Presence detected"
    assert sensors["SEL"].status == "ns" and sensors["SEL"].value is None


def test_recorded_sdr_v1_table() -> None:
    sensors = parse_sdr(shared("telegraf-ipmitool-sdr-v1-ibm.txt"))
    by_name = {s.name: s for s in sensors}
    assert by_name["Ambient Temp"].value == 20 and by_name["Ambient Temp"].status == "ok"
    assert by_name["Planar 12V"].value == 12.04
    assert by_name["Fan 1"].metric is None  # a discrete 0x00 reading is a state, not a number
    assert len(sensors) == sum(
        1
        for line in shared("telegraf-ipmitool-sdr-v1-ibm.txt").splitlines()
        if line.count("|") == 2
    )
    assert {s.status for s in sensors} <= {"ok", "ns", "nc", "cr", "nr"}


def test_recorded_dcmi() -> None:
    assert dcmi_watts(shared("telegraf-ipmitool-dcmi-power-reading.txt")) == 167


def test_every_recorded_ipmi_file_is_covered() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    assert {p.name for p in SHARED.glob("*.txt")} == {
        "telegraf-ipmitool-sdr-elist-v2-curated.txt",
        "telegraf-ipmitool-sdr-v1-ibm.txt",
        "telegraf-ipmitool-dcmi-power-reading.txt",
    }


@pytest.mark.skipif(shutil.which("ipmitool") is None, reason="ipmitool is not installed")
def test_real_ipmitool_without_a_bmc() -> None:
    if any(Path(d).exists() for d in ("/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0")):
        pytest.skip("this host has a BMC: the no-BMC answer cannot be seen here")
    plugin = IpmiPlugin()
    assert plugin.unavailable() == (
        "no /dev/ipmi0 (no BMC, or ipmi_si and ipmi_devintf not loaded) and no host"
    )
    # The real tool's refusal is the run's error, in one line.
    with pytest.raises(Exception, match=r"ipmitool exited 1: Could not open device at /dev/ipmi0"):
        collect(plugin)
