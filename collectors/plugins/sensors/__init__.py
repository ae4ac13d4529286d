"""Temperatures, fans, voltages and power from hwmon, thermal zones or `sensors -j`; batteries.

Only ``*_input`` values are readings. ``_max``, ``_crit``, ``_min`` and ``_alarm`` are limits and
flags of the same sensor; the critical limit is published under its own name, never as a reading.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from unity.collectors.hostfs import DEFAULT_SYS, read_number, read_word
from unity.sdk import Metric, Plugin, Sink

# hwmon sysfs units (Documentation/hwmon/sysfs-interface.rst): milli-degrees, RPM, millivolts,
# microwatts, milliamperes; the divisor turns each into the published unit.
_HWMON = {
    "temp": ("sensors_temperature_celsius", 1000.0),
    "fan": ("sensors_fan_rpm", 1.0),
    "in": ("sensors_voltage_volts", 1000.0),
    "power": ("sensors_power_watts", 1_000_000.0),
    "curr": ("sensors_current_amperes", 1000.0),
}
_INPUT = re.compile(r"^(temp|fan|in|power|curr)(\d+)_(input|average)$")


class SensorsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    hwmon: bool = True
    thermal_zones: bool = True
    batteries: bool = True
    lm_sensors: bool = False
    lm_sensors_command: tuple[str, ...] = ("sensors", "-j")
    lm_sensors_timeout: float = 5.0
    sys_root: str = DEFAULT_SYS


@dataclass(frozen=True, slots=True)
class Reading:
    metric: str
    chip: str
    sensor: str
    value: float


class SensorsError(RuntimeError):
    """`sensors -j` failed or printed something that is not its JSON."""


def hwmon_readings(sys_root: str) -> Iterator[Reading]:
    base = Path(sys_root, "class/hwmon")
    if not base.is_dir():
        return
    names: dict[str, int] = {}
    for hwmon in sorted(base.iterdir(), key=lambda p: p.name):
        # Older drivers keep their attributes under device/ rather than in the hwmon folder.
        folders = [hwmon, hwmon / "device"]
        name = read_word(hwmon / "name") or read_word(hwmon / "device/name") or hwmon.name
        names[name] = names.get(name, 0) + 1
        chip = name if names[name] == 1 else f"{name}-{hwmon.name}"
        for folder in folders:
            if not folder.is_dir():
                continue
            for attr in sorted(folder.iterdir(), key=lambda p: p.name):
                match = _INPUT.match(attr.name)
                if match is None:
                    continue
                kind, index = match.group(1), match.group(2)
                if (
                    kind == "power"
                    and match.group(3) == "input"
                    and (folder / f"power{index}_average").exists()
                ):
                    continue
                value = read_number(attr)
                if value is None:
                    continue  # EIO or ENODATA: sensor asleep or not wired
                metric, divisor = _HWMON[kind]
                label = read_word(folder / f"{kind}{index}_label") or f"{kind}{index}"
                yield Reading(metric, chip, label, value / divisor)
                if kind == "temp":
                    crit = read_number(folder / f"temp{index}_crit")
                    if crit is not None:
                        yield Reading(
                            "sensors_temperature_crit_celsius", chip, label, crit / divisor
                        )


def thermal_readings(sys_root: str) -> Iterator[Reading]:
    base = Path(sys_root, "class/thermal")
    if not base.is_dir():
        return
    for zone in sorted(base.glob("thermal_zone*"), key=lambda p: p.name):
        milli = read_number(zone / "temp")
        if milli is None or milli <= -273_000:
            continue  # disabled zone or "no reading" marker
        yield Reading(
            "sensors_temperature_celsius",
            zone.name,
            read_word(zone / "type") or zone.name,
            milli / 1000,
        )


def lm_sensors_readings(doc: dict[str, Any]) -> Iterator[Reading]:
    """Readings from `sensors -j`: chip -> feature -> {subfeature: value}; only *_input count."""
    for chip, features in doc.items():
        if not isinstance(features, dict):
            continue
        for feature, subs in features.items():
            if not isinstance(subs, dict):
                continue  # "Adapter": "ISA adapter"
            for sub, value in subs.items():
                match = _INPUT.match(sub)
                if match is None or not isinstance(value, int | float):
                    continue
                if sub.endswith("_input") and sub.replace("_input", "_average") in subs:
                    continue  # power meters give both; the average is the steadier one
                metric = _HWMON[match.group(1)][0]
                yield Reading(metric, chip, feature, float(value))
                if match.group(1) == "temp":
                    crit = subs.get(f"temp{match.group(2)}_crit")
                    if isinstance(crit, int | float):
                        yield Reading("sensors_temperature_crit_celsius", chip, feature, crit)


def run_lm_sensors(argv: tuple[str, ...], timeout: float) -> dict[str, Any]:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SensorsError(f"{argv[0]} not found (install lm-sensors)") from None
    except subprocess.TimeoutExpired:
        raise SensorsError(f"{argv[0]} did not answer within {timeout:.0f}s") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise SensorsError(f"{argv[0]} exited {done.returncode}: {why[0] if why else 'no output'}")
    try:
        doc = json.loads(done.stdout)
    except ValueError as exc:
        raise SensorsError(f"{argv[0]} printed no JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SensorsError(f"{argv[0]} printed JSON that is not an object of chips")
    return doc


class SensorsPlugin(Plugin):
    id = "sensors"
    name = "Sensors"
    description = (
        "Temperatures, fans, voltages, power (hwmon, thermal zones, lm-sensors); batteries."
    )
    category = "system"
    Config = SensorsConfig
    metrics = (
        Metric("sensors_temperature_celsius", "celsius", "gauge", "temperature reading"),
        Metric(
            "sensors_temperature_crit_celsius", "celsius", "gauge", "critical temperature limit"
        ),
        Metric("sensors_fan_rpm", "rpm", "gauge", "fan speed"),
        Metric("sensors_voltage_volts", "volts", "gauge", "voltage reading"),
        Metric("sensors_power_watts", "watts", "gauge", "power reading"),
        Metric("sensors_current_amperes", "amperes", "gauge", "current reading"),
        Metric("battery_capacity_percent", "percent", "gauge", "charge left"),
        Metric("battery_energy_wh", "watt-hours", "gauge", "energy left"),
        Metric(
            "battery_energy_full_wh", "watt-hours", "gauge", "energy when full (last full charge)"
        ),
        Metric("battery_power_watts", "watts", "gauge", "charge or discharge power"),
        Metric("battery_voltage_volts", "volts", "gauge", "voltage now"),
        Metric("battery_discharging", "", "gauge", "1 while running on battery, else 0"),
        Metric("power_supply_online", "", "gauge", "1 when the mains adapter is connected"),
    )

    config: SensorsConfig

    def collect(self, sink: Sink) -> None:
        cfg = self.config
        readings: list[Reading] = []
        if cfg.lm_sensors:
            # lm-sensors reads the same hwmon devices: one source or the other, never both.
            readings.extend(
                lm_sensors_readings(run_lm_sensors(cfg.lm_sensors_command, cfg.lm_sensors_timeout))
            )
        elif cfg.hwmon:
            readings.extend(hwmon_readings(cfg.sys_root))
        if cfg.thermal_zones:
            readings.extend(thermal_readings(cfg.sys_root))
        seen: dict[tuple[str, str, str], int] = {}
        for r in readings:
            # Two sensors of one chip may share a label; number the later ones, keep them all.
            key = (r.metric, r.chip, r.sensor)
            seen[key] = seen.get(key, 0) + 1
            sensor = r.sensor if seen[key] == 1 else f"{r.sensor} #{seen[key]}"
            sink.add(r.metric, r.value, {"chip": r.chip, "sensor": sensor})
        if cfg.batteries:
            power_supplies(Path(cfg.sys_root, "class/power_supply"), sink)


def power_supplies(base: Path, sink: Sink) -> None:
    if not base.is_dir():
        return
    for supply in sorted(base.iterdir(), key=lambda p: p.name):
        kind = read_word(supply / "type")
        if kind == "Mains":
            online = read_number(supply / "online")
            if online is not None:
                sink.add("power_supply_online", online, {"supply": supply.name})
        elif kind == "Battery":
            _battery(supply, sink)


def _battery(folder: Path, sink: Sink) -> None:
    labels = {"battery": folder.name}
    present = read_number(folder / "present")
    if present == 0:
        return  # an empty bay
    voltage = read_number(folder / "voltage_now")
    energy = read_number(folder / "energy_now")
    full = read_number(folder / "energy_full")
    if energy is None and voltage:
        # Batteries that report charge (uAh) instead of energy (uWh): energy = charge * voltage.
        charge, charge_full = (
            read_number(folder / "charge_now"),
            read_number(folder / "charge_full"),
        )
        energy = charge * voltage / 1e6 if charge is not None else None
        full = charge_full * voltage / 1e6 if charge_full is not None else None
    capacity = read_number(folder / "capacity")
    if capacity is None and energy is not None and full:
        capacity = 100.0 * energy / full
    if capacity is not None:
        sink.add("battery_capacity_percent", capacity, labels)
    if energy is not None:
        sink.add("battery_energy_wh", energy / 1e6, labels)
    if full is not None:
        sink.add("battery_energy_full_wh", full / 1e6, labels)
    power = read_number(folder / "power_now")
    if power is None:
        current = read_number(folder / "current_now")
        power = current * voltage / 1e6 if current is not None and voltage else None
    if power is not None:
        # Some ACPI firmware reports discharge as a negative number.
        sink.add("battery_power_watts", abs(power) / 1e6, labels)
    if voltage is not None:
        sink.add("battery_voltage_volts", voltage / 1e6, labels)
    status = read_word(folder / "status")
    if status is not None:
        sink.add("battery_discharging", 1.0 if status == "Discharging" else 0.0, labels)
