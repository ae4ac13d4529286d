"""Disk health through smartctl's JSON: `smartctl --scan-open -j`, then `smartctl -a -j` per disk.

smartctl's exit status is a bit mask (smartctl(8) "RETURN VALUES"): bits 0 and 1 mean the
device could not be read, the others report what it found (a failing disk exits 8 or more with
a complete answer). So every code is accepted and the JSON decides; a device that cannot be
read degrades the run without failing the other devices.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from unity.collectors import command
from unity.sdk import Health, Metric, Plugin, Sink

# NVMe SMART / Health log, byte 0 (NVM Express Base Specification, "Critical Warning").
NVME_WARNINGS = (
    "available_spare_low",
    "temperature",
    "reliability_degraded",
    "read_only",
    "volatile_backup_failed",
    "persistent_memory_read_only",
)

# ATA attribute id -> metric; their raw counts are read from raw.string's leading number,
# which smartctl decodes per attribute (raw.value packs vendor fields into 48 bits).
ATA_ATTRIBUTES = {
    5: "smart_reallocated_sectors",
    197: "smart_pending_sectors",
    198: "smart_offline_uncorrectable_sectors",
    187: "smart_reported_uncorrectable_errors",
    199: "smart_crc_errors_total",
}
_LEADING_NUMBER = re.compile(r"^\s*(\d+)")
_DATA_UNIT_BYTES = 512_000  # NVMe "Data Units Read/Written" count thousands of 512-byte units
_UNREADABLE = 0b11  # exit bits 0 (bad command line) and 1 (open failed or in standby)
_ASLEEP = re.compile(r"\b(STANDBY|SLEEP|IDLE)\b mode")
_DATA_KEYS = (
    "smart_status",
    "ata_smart_attributes",
    "nvme_smart_health_information_log",
    "scsi_error_counter_log",
    "temperature",
)


class SmartDevice(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    # smartctl's -d: "sat" for most USB bridges, "nvme", "megaraid,N", "auto"...
    type: str = "auto"


class SmartConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    command: tuple[str, ...] = ("smartctl",)
    command_timeout: float = 10.0
    devices: tuple[SmartDevice, ...] = ()
    exclude: tuple[str, ...] = ()
    nocheck: str = "standby"


class SmartError(RuntimeError):
    """smartctl printed something that is not its JSON, or the scan failed."""


def parse_json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SmartError(f"{what}: not smartctl JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SmartError(f"{what}: not smartctl JSON (a {type(data).__name__})")
    return data


def scan(data: Mapping[str, Any]) -> list[SmartDevice]:
    return [
        SmartDevice(str(d["name"]), str(d.get("type") or "auto"))
        for d in data.get("devices") or []
        if isinstance(d, dict) and d.get("name")
    ]


def _messages(data: Mapping[str, Any]) -> list[str]:
    info = data.get("smartctl") or {}
    return [str(m.get("string", "")) for m in info.get("messages") or [] if isinstance(m, dict)]


def standby(data: Mapping[str, Any]) -> bool:
    """``-n standby`` skipped a spun-down disk (exit bit 1): asleep, not broken."""
    status = int((data.get("smartctl") or {}).get("exit_status") or 0)
    return bool(status & 2) and any(_ASLEEP.search(m) for m in _messages(data))


def failure(data: Mapping[str, Any]) -> str | None:
    """Why smartctl could not read the device, or None when the answer holds data."""
    status = int((data.get("smartctl") or {}).get("exit_status") or 0)
    if status & _UNREADABLE == 0 or any(key in data for key in _DATA_KEYS):
        return None
    errors = _messages(data)
    return (errors[0] if errors else f"smartctl exit status {status}").splitlines()[0][:200]


def health_of(data: Mapping[str, Any]) -> str:
    """``passed``, ``failed``, or ``unknown`` when smartctl did not say (USB bridges, RAID)."""
    passed = (data.get("smart_status") or {}).get("passed")
    if passed is None:
        return "unknown"
    return "passed" if passed else "failed"


def raw_count(attribute: Mapping[str, Any]) -> float | None:
    raw = attribute.get("raw") or {}
    match = _LEADING_NUMBER.match(str(raw.get("string", "")))
    if match:
        return float(match.group(1))
    value = raw.get("value")
    return float(value) if isinstance(value, int | float) else None


def readings(data: Mapping[str, Any]) -> dict[str, float]:
    """The device's numbers by metric name, only those its answer holds."""
    out: dict[str, float] = {}
    status = health_of(data)
    if status != "unknown":
        out["smart_health_passed"] = 1.0 if status == "passed" else 0.0
    temperature = data.get("temperature") or {}
    # A RAID volume or bridge without a sensor reports 0 with a 0 trip point: no reading.
    if isinstance(temperature.get("current"), int | float) and (
        temperature["current"] != 0 or temperature.get("drive_trip")
    ):
        out["smart_temperature_celsius"] = float(temperature["current"])
    power_on = data.get("power_on_time") or {}
    if "hours" in power_on:
        out["smart_power_on_seconds"] = power_on["hours"] * 3600.0 + power_on.get("minutes", 0) * 60
    if isinstance(data.get("power_cycle_count"), int):
        out["smart_power_cycles_total"] = float(data["power_cycle_count"])
    for attribute in (data.get("ata_smart_attributes") or {}).get("table") or []:
        metric = ATA_ATTRIBUTES.get(attribute.get("id"))
        value = raw_count(attribute)
        if metric is not None and value is not None:
            out[metric] = value
        if attribute.get("id") == 9 and "smart_power_on_seconds" not in out and value is not None:
            out["smart_power_on_seconds"] = value * 3600.0
    if isinstance(data.get("scsi_grown_defect_list"), int):
        out["smart_reallocated_sectors"] = float(data["scsi_grown_defect_list"])
    errors = data.get("scsi_error_counter_log") or {}
    if errors:
        out["smart_uncorrected_errors_total"] = float(
            sum(int(errors[op].get("total_uncorrected_errors", 0)) for op in errors)
        )
    nvme = data.get("nvme_smart_health_information_log") or {}
    if nvme:
        for key, metric in (
            ("percentage_used", "smart_nvme_percentage_used_percent"),
            ("available_spare", "smart_nvme_available_spare_percent"),
            ("available_spare_threshold", "smart_nvme_available_spare_threshold_percent"),
            ("critical_warning", "smart_nvme_critical_warning"),
            ("media_errors", "smart_uncorrected_errors_total"),
            ("unsafe_shutdowns", "smart_nvme_unsafe_shutdowns_total"),
        ):
            if isinstance(nvme.get(key), int):
                out[metric] = float(nvme[key])
        for key, metric in (
            ("data_units_read", "smart_nvme_read_bytes"),
            ("data_units_written", "smart_nvme_written_bytes"),
        ):
            if isinstance(nvme.get(key), int):
                out[metric] = float(nvme[key] * _DATA_UNIT_BYTES)
    return out


def nvme_warnings(data: Mapping[str, Any]) -> dict[str, bool] | None:
    value = (data.get("nvme_smart_health_information_log") or {}).get("critical_warning")
    if not isinstance(value, int):
        return None
    return {name: bool(value >> bit & 1) for bit, name in enumerate(NVME_WARNINGS)}


class SmartPlugin(Plugin):
    id = "smart"
    name = "S.M.A.R.T."
    description = "Per disk: SMART health, temperature, power-on time, bad sectors, NVMe wear."
    category = "storage"
    tags = ("disk", "smartctl", "nvme")
    Config = SmartConfig
    metrics = (
        Metric("smart_health_passed", "", "gauge", "1 passed, 0 failing (absent when unknown)"),
        Metric("smart_temperature_celsius", "celsius", "gauge", "drive temperature"),
        Metric("smart_power_on_seconds", "seconds", "counter", "time powered on"),
        Metric("smart_power_cycles_total", "", "counter", "power cycles"),
        Metric("smart_reallocated_sectors", "", "gauge", "reallocated (SCSI: grown defect) count"),
        Metric("smart_pending_sectors", "", "gauge", "sectors waiting to be remapped (197)"),
        Metric("smart_offline_uncorrectable_sectors", "", "gauge", "offline uncorrectable (198)"),
        Metric("smart_reported_uncorrectable_errors", "", "gauge", "reported uncorrectable (187)"),
        Metric("smart_crc_errors_total", "", "counter", "interface CRC errors (199)"),
        Metric("smart_uncorrected_errors_total", "", "counter", "SCSI uncorrected, NVMe media"),
        Metric("smart_nvme_percentage_used_percent", "percent", "gauge", "NVMe wear"),
        Metric("smart_nvme_available_spare_percent", "percent", "gauge", "NVMe spare left"),
        Metric("smart_nvme_available_spare_threshold_percent", "percent", "gauge", "spare limit"),
        Metric("smart_nvme_critical_warning", "", "gauge", "NVMe critical warning byte"),
        Metric("smart_nvme_warning", "", "gauge", "1 while the labelled warning bit is set"),
        Metric("smart_nvme_unsafe_shutdowns_total", "", "counter", "NVMe unsafe shutdowns"),
        Metric("smart_nvme_read_bytes", "bytes", "counter", "NVMe data read"),
        Metric("smart_nvme_written_bytes", "bytes", "counter", "NVMe data written"),
        Metric("smart_devices", "", "gauge", "devices found"),
        Metric("smart_devices_unreadable", "", "gauge", "devices smartctl could not read"),
        Metric("smart_devices_standby", "", "gauge", "spun-down disks left asleep (-n standby)"),
    )

    config: SmartConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._health: Health | None = None
        self._last_status: dict[str, str] = {}

    def unavailable(self) -> str | None:
        return command.missing(self.config.command)

    def health(self) -> Health | None:
        return self._health

    def _smartctl(self, args: list[str], what: str) -> dict[str, Any]:
        out = command.run(
            self.config.command, args, timeout=self.config.command_timeout, ok_codes=range(256)
        )
        return parse_json(out.stdout, what)

    def devices(self) -> list[SmartDevice]:
        found = list(self.config.devices)
        if not found:
            data = self._smartctl(["--scan-open", "-j"], "smartctl --scan-open")
            if failure(data) is not None or (data.get("smartctl") or {}).get("exit_status", 0):
                raise SmartError(f"smartctl --scan-open: {failure(data) or 'failed'}")
            found = scan(data)
        return [d for d in found if d.name not in self.config.exclude]

    def collect(self, sink: Sink) -> None:
        self._health = None
        devices = self.devices()
        problems: list[str] = []
        asleep = 0
        inventory: list[dict[str, Any]] = []
        status_now: dict[str, str] = {}
        for device in devices:
            args = ["-a", "-j", "-d", device.type]
            if self.config.nocheck:
                args += ["-n", self.config.nocheck]
            try:
                data = self._smartctl([*args, device.name], device.name)
            except SmartError as exc:
                problems.append(str(exc))
                continue
            except command.CommandError as exc:
                problems.append(f"{device.name}: {exc}")
                continue
            key = f"{device.name} {device.type}"
            if standby(data):
                asleep += 1
                status_now[key] = self._last_status.get(key, "standby")
                continue
            why = failure(data)
            if why is not None:
                problems.append(why if why.startswith(device.name) else f"{device.name}: {why}")
                continue
            labels = {
                "device": device.name,
                "type": device.type,
                "model": str(data.get("model_name") or data.get("scsi_model_name") or ""),
                "serial": str(data.get("serial_number") or ""),
            }
            for metric, value in readings(data).items():
                sink.add(metric, value, labels)
            for warning, on in (nvme_warnings(data) or {}).items():
                sink.add("smart_nvme_warning", 1.0 if on else 0.0, {**labels, "warning": warning})
            status = health_of(data)
            status_now[key] = status
            inventory.append({**labels, "health": status})
            before = self._last_status.get(key)
            if status == "failed" and before != "failed":
                sink.event(
                    "smart_failing",
                    f"{device.name} ({labels['model']}): SMART overall health FAILED",
                    {**labels, "was": before or "new"},
                    "critical",
                )
        sink.add("smart_devices", float(len(devices)))
        sink.add("smart_devices_unreadable", float(len(problems)))
        sink.add("smart_devices_standby", float(asleep))
        if status_now != self._last_status:
            sink.event("smart_inventory", f"{len(inventory)} disks", {"devices": inventory})
        self._last_status = status_now
        if devices and len(problems) == len(devices):
            raise SmartError(f"no device readable: {problems[0]}")
        self._health = (
            Health("degraded", f"{len(problems)} of {len(devices)} unreadable: {problems[0]}")
            if problems
            else None
        )
