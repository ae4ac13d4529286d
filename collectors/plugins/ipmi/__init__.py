"""BMC sensors, chassis power and the event log through ipmitool.

``ipmitool sdr elist`` prints ``name | id | status | entity | reading`` (older ``sdr``: ``name |
reading | status``); status is ``ok``, ``nc`` (non-critical), ``cr`` (critical), ``nr``
(non-recoverable) or ``ns`` (no reading). A remote BMC's password goes to ipmitool through
``IPMI_PASSWORD`` with ``-E``, never on its command line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from unity.collectors import command
from unity.sdk import Health, Metric, Plugin, Sink

# Reading unit (as ipmitool spells it) -> metric.
UNITS = {
    "degrees C": "ipmi_temperature_celsius",
    "RPM": "ipmi_fan_rpm",
    "Volts": "ipmi_voltage_volts",
    "Watts": "ipmi_power_watts",
    "Amps": "ipmi_current_amperes",
}
STATUS = {"ok": 0, "nc": 1, "cr": 2, "nr": 3}
DEVICES = ("/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0")
_READING = re.compile(r"^(-?[\d.]+) (degrees C|RPM|Volts|Watts|Amps)\b")
_FIELD = re.compile(r"^\s*([^:]+?)\s*:\s*(.*)$")
_WATTS = re.compile(r"^\s*Instantaneous power reading:\s+(\d+) Watts", re.M)


class IpmiError(RuntimeError):
    """ipmitool printed something this plugin cannot read."""


@dataclass(frozen=True, slots=True)
class Sensor:
    name: str
    status: str
    metric: str | None
    value: float | None
    reading: str


def parse_sdr(text: str) -> list[Sensor]:
    sensors = []
    for line in text.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) == 5:  # elist: name | id | status | entity | reading
            name, status, reading = cols[0], cols[2], cols[4]
        elif len(cols) == 3:  # sdr: name | reading | status
            name, reading, status = cols
        else:
            continue  # "Unable to send command: ..." and other noise between rows
        match = _READING.match(reading)
        metric = UNITS.get(match.group(2)) if match else None
        value = float(match.group(1)) if match else None
        sensors.append(Sensor(name, status, metric, value, reading))
    return sensors


def parse_fields(text: str) -> dict[str, str]:
    """``Key : value`` lines (``sel info``, ``chassis status``)."""
    return {m.group(1): m.group(2).strip() for m in map(_FIELD.match, text.splitlines()) if m}


def dcmi_watts(text: str) -> float | None:
    match = _WATTS.search(text)
    return float(match.group(1)) if match else None


class IpmiConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    command: tuple[str, ...] = ("ipmitool",)
    command_timeout: float = 15.0
    # A remote BMC; empty = this machine's BMC through /dev/ipmi0.
    host: str = ""
    interface: Literal["lanplus", "lan"] = "lanplus"
    username: str = ""
    # The name of the variable holding it, not a password.
    password_env: str = "IPMI_PASSWORD"  # noqa: S105
    password_file: str = ""
    sel: bool = True
    chassis: bool = True
    # `dcmi power reading`: the whole system's draw, on BMCs that support DCMI.
    dcmi: bool = False


class IpmiPlugin(Plugin):
    id = "ipmi"
    name = "IPMI"
    description = "BMC sensors (temperature, fan, voltage, power), chassis power, SEL entries."
    category = "hardware"
    tags = ("ipmi", "bmc", "ipmitool")
    Config = IpmiConfig
    metrics = (
        Metric("ipmi_temperature_celsius", "celsius", "gauge", "temperature sensor"),
        Metric("ipmi_fan_rpm", "rpm", "gauge", "fan speed"),
        Metric("ipmi_voltage_volts", "volts", "gauge", "voltage sensor"),
        Metric("ipmi_power_watts", "watts", "gauge", "power sensor"),
        Metric("ipmi_current_amperes", "amperes", "gauge", "current sensor"),
        Metric(
            "ipmi_sensor_status", "", "gauge", "0 ok, 1 non-critical, 2 critical, 3 non-recoverable"
        ),
        Metric("ipmi_chassis_power_on", "", "gauge", "1 while the system is powered on"),
        Metric("ipmi_sel_entries", "", "gauge", "entries in the system event log"),
        Metric("ipmi_sel_used_percent", "percent", "gauge", "event log space used"),
        Metric("ipmi_dcmi_power_watts", "watts", "gauge", "system power draw (DCMI)"),
    )

    config: IpmiConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._alerts: dict[str, str] | None = None
        self._sel: float | None = None
        self._health: Health | None = None

    def unavailable(self) -> str | None:
        missing = command.missing(self.config.command)
        if missing or self.config.host:
            return missing
        if not any(Path(d).exists() for d in DEVICES):
            return "no /dev/ipmi0 (no BMC, or ipmi_si and ipmi_devintf not loaded) and no host"
        return None

    def health(self) -> Health | None:
        return self._health

    def _run(self, *args: str) -> str:
        prefix: list[str] = []
        env: Mapping[str, str] | None = None
        if self.config.host:
            prefix = ["-I", self.config.interface, "-H", self.config.host]
            if self.config.username:
                prefix += ["-U", self.config.username]
            password = command.read_secret(self.config.password_env, self.config.password_file)
            if password is not None:
                # -E: ipmitool reads IPMI_PASSWORD, so the password is never on argv.
                prefix.append("-E")
                env = {"IPMI_PASSWORD": password}
        return command.run(
            self.config.command, [*prefix, *args], timeout=self.config.command_timeout, env=env
        ).stdout

    def collect(self, sink: Sink) -> None:
        self._health = None
        sensors = parse_sdr(self._run("sdr", "elist"))
        if not sensors:
            raise IpmiError("ipmitool sdr elist listed no sensors")
        alerts: dict[str, str] = {}
        for sensor in sensors:
            labels = {"sensor": sensor.name}
            if sensor.metric is not None and sensor.value is not None and sensor.status != "ns":
                sink.add(sensor.metric, sensor.value, labels)
            if sensor.status in STATUS:
                sink.add("ipmi_sensor_status", float(STATUS[sensor.status]), labels)
                if sensor.status != "ok":
                    alerts[sensor.name] = f"{sensor.status}: {sensor.reading}"
        problems: list[str] = []
        for enabled, part in (
            (self.config.chassis, self._chassis),
            (self.config.sel, self._sel_info),
            (self.config.dcmi, self._dcmi),
        ):
            if enabled:
                try:
                    part(sink)
                except (command.CommandError, IpmiError) as exc:
                    problems.append(str(exc))
        if alerts != self._alerts and (self._alerts is not None or alerts):
            worst = max((STATUS[v.split(":")[0]] for v in alerts.values()), default=0)
            sink.event(
                "ipmi_sensor_alerts",
                ", ".join(f"{k} {v}" for k, v in alerts.items()) or "all sensors ok",
                {"sensors": alerts, "was": self._alerts},
                ("info", "warning", "critical", "critical")[worst],
            )
        self._alerts = alerts
        if problems:
            self._health = Health("degraded", "; ".join(problems))

    def _chassis(self, sink: Sink) -> None:
        power = parse_fields(self._run("chassis", "status")).get("System Power")
        if power not in ("on", "off"):
            raise IpmiError(f"chassis status: no 'System Power' on/off (got {power!r})")
        sink.add("ipmi_chassis_power_on", 1.0 if power == "on" else 0.0)

    def _sel_info(self, sink: Sink) -> None:
        fields = parse_fields(self._run("sel", "info"))
        try:
            entries = float(fields["Entries"])
        except (KeyError, ValueError):
            raise IpmiError("sel info: no 'Entries' count") from None
        sink.add("ipmi_sel_entries", entries)
        used = fields.get("Percent Used", "").rstrip("%")
        if used.replace(".", "", 1).isdigit():
            sink.add("ipmi_sel_used_percent", float(used))
        if self._sel is not None and entries > self._sel:
            sink.event(
                "ipmi_sel_new_entries",
                f"{entries - self._sel:g} new event log entries ({entries:g} in all)",
                {"entries": entries, "was": self._sel},
                "warning",
            )
        self._sel = entries

    def _dcmi(self, sink: Sink) -> None:
        watts = dcmi_watts(self._run("dcmi", "power", "reading"))
        if watts is None:
            raise IpmiError("dcmi power reading: no instantaneous reading")
        sink.add("ipmi_dcmi_power_watts", watts)
