"""UPS state from Network UPS Tools (the upsd protocol, or `upsc` as a fallback) or apcupsd.

The protocol (NUT's docs/net-protocol.txt) is line based on TCP 3493: ``LIST UPS`` answers
``UPS <name> "<description>"`` lines, ``LIST VAR <ups>`` answers ``VAR <ups> <var> "<value>"``
lines, each list between ``BEGIN LIST ...`` and ``END LIST ...``; a refusal is ``ERR <reason>``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from unity.collectors import command
from unity.collectors.plugins.ups import apcupsd
from unity.sdk import Health, Metric, Plugin, Sink

# ups.status words (NUT docs/new-drivers.txt, "Status data"); each is published as 0 or 1.
FLAGS = (
    "OL", "OB", "LB", "HB", "RB", "CHRG", "DISCHRG", "BYPASS", "CAL", "OFF", "OVER", "TRIM",
    "BOOST", "FSD", "ALARM",
)  # fmt: skip
# Variable -> metric, in the published unit already (NUT uses %, s, V, Hz, degC).
VARIABLES = {
    "battery.charge": "ups_battery_charge_percent",
    "battery.runtime": "ups_battery_runtime_seconds",
    "battery.voltage": "ups_battery_voltage_volts",
    "ups.load": "ups_load_percent",
    "input.voltage": "ups_input_voltage_volts",
    "output.voltage": "ups_output_voltage_volts",
    "input.frequency": "ups_input_frequency_hertz",
    "ups.temperature": "ups_temperature_celsius",
    "ups.realpower.nominal": "ups_power_nominal_watts",
}
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")
_LOOPBACK_NAMES = ("localhost",)
UPSD_PORT = 3493
APCUPSD_PORT = 3551


class UpsError(RuntimeError):
    """upsd could not be reached, refused, or answered outside its protocol."""


class UpsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: Literal["network", "upsc", "apcupsd"] = "network"
    host: str = "127.0.0.1"
    # 0 = the source's own: upsd 3493, apcupsd 3551.
    port: int = 0
    # Names of the UPSes on that upsd; empty = every one LIST UPS names.
    ups: tuple[str, ...] = ()
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    read_timeout: float = 5.0
    # For source = "upsc": the argv prefix (["docker", "exec", "nut", "upsc"] fits).
    command: tuple[str, ...] = ("upsc",)
    command_timeout: float = 5.0


def unquote(text: str) -> str:
    return _ESCAPE.sub(r"\1", text)


def parse_upsc(text: str) -> dict[str, str]:
    """``upsc <ups>`` output (``var: value`` lines). NUT DDL dumps add ``#`` comments: skipped."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or ": " not in line:
            continue
        name, value = line.split(": ", 1)
        found[name.strip()] = value.split("\t#", 1)[0].strip()
    return found


def number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def flags(variables: Mapping[str, str]) -> set[str]:
    return set(variables.get("ups.status", "").split())


def readings(variables: Mapping[str, str]) -> dict[str, tuple[float, dict[str, str]]]:
    """Metric -> (value, extra labels) for one UPS's variables."""
    out: dict[str, tuple[float, dict[str, str]]] = {}
    for var, metric in VARIABLES.items():
        value = number(variables.get(var))
        if value is not None:
            out[metric] = (value, {})
    if "ups_temperature_celsius" not in out:
        value = number(variables.get("battery.temperature"))
        if value is not None:
            out["ups_temperature_celsius"] = (value, {})
    real = number(variables.get("ups.realpower"))
    load, nominal = (
        number(variables.get("ups.load")),
        number(variables.get("ups.realpower.nominal")),
    )
    if real is not None:
        out["ups_power_watts"] = (real, {"source": "reported"})
    elif load is not None and nominal is not None:
        # Most USB UPSes report only load and nominal power: watts = load% x nominal.
        out["ups_power_watts"] = (load * nominal / 100.0, {"source": "derived"})
    return out


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Connection:
    """One upsd session: commands out, lines in."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.where = f"upsd {host}:{port}"
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise UpsError(f"{self.where}: {exc.strerror or exc}") from None
        self._file = self._sock.makefile("rb")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(b"LOGOUT\n")
        self._file.close()
        self._sock.close()

    def _line(self) -> str:
        try:
            raw = self._file.readline(65536)
        except OSError as exc:
            raise UpsError(f"{self.where}: {exc}") from None
        if not raw:
            raise UpsError(f"{self.where} closed the connection")
        return raw.decode(errors="replace").rstrip("\r\n")

    def ask(self, line: str, secret: bool = False) -> str:
        try:
            self._sock.sendall(line.encode() + b"\n")
        except OSError as exc:
            raise UpsError(f"{self.where}: {exc}") from None
        answer = self._line()
        if answer.startswith("ERR "):
            what = line.split()[0] if secret else line
            raise UpsError(f"{self.where} refused {what!r}: {answer[4:]}")
        return answer

    def listing(self, what: str) -> list[list[str]]:
        """``LIST <what>``: each line's words, quoted values unquoted."""
        first = self.ask(f"LIST {what}")
        if first != f"BEGIN LIST {what}":
            raise UpsError(f"{self.where} answered {first[:80]!r} to LIST {what}")
        rows = []
        while (line := self._line()) != f"END LIST {what}":
            head, _, rest = line.partition('"')
            words = head.split()
            quoted = _QUOTED.search('"' + rest) if rest else None
            rows.append([*words, unquote(quoted.group(1))] if quoted else words)
        return rows


class UpsPlugin(Plugin):
    id = "ups"
    name = "UPS (NUT)"
    description = "UPS charge, runtime, load, voltages, power and status flags from NUT."
    category = "power"
    tags = ("nut", "upsd", "ups", "battery")
    Config = UpsConfig
    metrics = (
        Metric("ups_battery_charge_percent", "percent", "gauge", "battery charge"),
        Metric("ups_battery_runtime_seconds", "seconds", "gauge", "runtime left on battery"),
        Metric("ups_battery_voltage_volts", "volts", "gauge", "battery voltage"),
        Metric("ups_load_percent", "percent", "gauge", "load, share of capacity"),
        Metric("ups_input_voltage_volts", "volts", "gauge", "mains voltage in"),
        Metric("ups_output_voltage_volts", "volts", "gauge", "voltage out"),
        Metric("ups_input_frequency_hertz", "hertz", "gauge", "mains frequency"),
        Metric("ups_temperature_celsius", "celsius", "gauge", "UPS or battery temperature"),
        Metric("ups_power_watts", "watts", "gauge", "real power out (reported or derived)"),
        Metric("ups_power_nominal_watts", "watts", "gauge", "rated real power"),
        Metric("ups_status", "", "gauge", "1 while the labelled ups.status flag is set"),
    )

    config: UpsConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._health: Health | None = None
        self._status: dict[str, str] = {}

    @property
    def port(self) -> int:
        if self.config.port:
            return self.config.port
        return APCUPSD_PORT if self.config.source == "apcupsd" else UPSD_PORT

    def unavailable(self) -> str | None:
        if self.config.source == "upsc":
            return command.missing(self.config.command)
        server = "apcupsd" if self.config.source == "apcupsd" else "upsd"
        try:
            socket.create_connection((self.config.host, self.port), timeout=1).close()
        except OSError as exc:
            return f"no {server} at {self.config.host}:{self.port} ({exc.strerror or exc})"
        return None

    def health(self) -> Health | None:
        return self._health

    def _password(self) -> str | None:
        secret = command.read_secret(self.config.password_env, self.config.password_file)
        if secret is not None and not is_loopback(self.config.host):
            # The protocol sends PASSWORD in clear: only over loopback.
            raise UpsError(f"refusing to send a password in clear to {self.config.host}")
        return secret

    def _network(self) -> dict[str, dict[str, str] | str]:
        """Each UPS's variables, or the reason upsd gave for it."""
        password = self._password()
        conn = Connection(self.config.host, self.port, self.config.read_timeout)
        try:
            if self.config.username:
                conn.ask(f"USERNAME {self.config.username}")
            if password is not None:
                conn.ask(f"PASSWORD {password}", secret=True)
            names = list(self.config.ups) or [row[1] for row in conn.listing("UPS")]
            found: dict[str, dict[str, str] | str] = {}
            for ups in names:
                try:
                    rows = conn.listing(f"VAR {ups}")
                except UpsError as exc:
                    found[ups] = str(exc)
                    continue
                found[ups] = {row[2]: row[3] for row in rows if len(row) == 4}
            return found
        finally:
            conn.close()

    def _upsc(self) -> dict[str, dict[str, str] | str]:
        where = f"@{self.config.host}:{self.port}"
        names = list(self.config.ups)
        timeout = self.config.command_timeout
        if not names:
            out = command.run(self.config.command, ["-l", where], timeout=timeout)
            names = out.stdout.split()
        found: dict[str, dict[str, str] | str] = {}
        for ups in names:
            try:
                out = command.run(self.config.command, [ups + where], timeout=timeout)
            except command.CommandError as exc:
                found[ups] = str(exc)
                continue
            found[ups] = parse_upsc(out.stdout)
        return found

    def _apcupsd(self) -> dict[str, dict[str, str] | str]:
        try:
            text = apcupsd.status(self.config.host, self.port, self.config.read_timeout)
        except apcupsd.NisError as exc:
            raise UpsError(str(exc)) from None
        fields = apcupsd.parse_status(text)
        if "STATUS" not in fields:
            raise UpsError(f"apcupsd {self.config.host}:{self.port} answered no STATUS")
        return {fields.get("UPSNAME") or self.config.host: apcupsd.variables(fields)}

    def collect(self, sink: Sink) -> None:
        self._health = None
        read = {"network": self._network, "upsc": self._upsc, "apcupsd": self._apcupsd}
        found = read[self.config.source]()
        problems = {ups: why for ups, why in found.items() if isinstance(why, str)}
        if found and len(problems) == len(found):
            raise UpsError("; ".join(f"{ups}: {why}" for ups, why in problems.items()))
        for ups, variables in found.items():
            if isinstance(variables, str):
                continue
            labels = {"ups": ups}
            for metric, (value, extra) in readings(variables).items():
                sink.add(metric, value, {**labels, **extra})
            on = flags(variables)
            for flag in FLAGS:
                sink.add("ups_status", 1.0 if flag in on else 0.0, {**labels, "flag": flag})
            self._event(sink, ups, variables)
        if problems:
            self._health = Health(
                "degraded", "; ".join(f"{ups}: {why}" for ups, why in problems.items())
            )

    def _event(self, sink: Sink, ups: str, variables: Mapping[str, str]) -> None:
        status = variables.get("ups.status", "")
        before = self._status.get(ups)
        self._status[ups] = status
        if status == before:
            return
        on = flags(variables)
        severity: Any = (
            "critical"
            if on & {"LB", "FSD", "OVER"}
            else "warning"
            if on & {"OB", "RB", "BYPASS", "ALARM", "OFF"}
            else "info"
        )
        data = {
            "ups": ups,
            "status": status,
            "was": before,
            **{
                k: variables[k]
                for k in ("device.mfr", "device.model", "device.serial", "driver.name")
                if k in variables
            },
        }
        for var in ("battery.charge", "battery.runtime", "ups.alarm"):
            if var in variables:
                data[var] = variables[var]
        was = f" (was {before or 'no status'})" if before is not None else ""
        sink.event("ups_status", f"{ups}: {status or 'no status'}{was}", data, severity)
