"""systemd unit states from `systemctl list-units`: JSON on systemd 246+, its text table before.

Older systemctl refuses ``--output=json`` ("Unknown output 'json'") or ignores it; the plugin
then reads the table (UNIT LOAD ACTIVE SUB DESCRIPTION, a ``●`` or ``*`` before failed and
not-found units, a legend after the first blank line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from unity.collectors import command
from unity.sdk import Metric, Plugin, Sink

ACTIVE_STATES = ("active", "reloading", "inactive", "failed", "activating", "deactivating")
_MARKS = ("●", "*")


class SystemdError(RuntimeError):
    """systemctl printed neither its JSON nor its table."""


@dataclass(frozen=True, slots=True)
class Unit:
    unit: str
    load: str
    active: str
    sub: str
    description: str

    @property
    def type(self) -> str:
        return self.unit.rsplit(".", 1)[-1] if "." in self.unit else ""


def parse_json(text: str) -> list[Unit]:
    try:
        rows = json.loads(text)
    except ValueError as exc:
        raise SystemdError(f"systemctl: not JSON ({exc})") from None
    if not isinstance(rows, list):
        raise SystemdError("systemctl: JSON is not a list of units")
    return [
        Unit(
            str(r.get("unit", "")),
            str(r.get("load", "")),
            str(r.get("active", "")),
            str(r.get("sub", "")),
            str(r.get("description", "")),
        )
        for r in rows
        if isinstance(r, dict) and r.get("unit")
    ]


def parse_text(text: str) -> list[Unit]:
    units: list[Unit] = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            if units:
                break  # the legend follows the first blank line after the table
            continue
        if words[0] in _MARKS:
            words = words[1:]
        if not words or words[0] == "UNIT":
            continue
        if len(words) < 4:
            raise SystemdError(f"systemctl: unexpected line {line.strip()[:80]!r}")
        units.append(Unit(words[0], words[1], words[2], words[3], " ".join(words[4:])))
    return units


class SystemdConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    command: tuple[str, ...] = ("systemctl",)
    command_timeout: float = 10.0
    scope: Literal["system", "user"] = "system"
    # Units to publish one by one (systemd_unit_active); every unit is counted either way.
    units: tuple[str, ...] = ()
    # Failed units to leave out of the failed count and event (a known-broken unit).
    ignore_failed: tuple[str, ...] = ()


class SystemdPlugin(Plugin):
    id = "systemd"
    name = "systemd"
    description = "systemd units by state and type, failed units as an event, chosen units."
    category = "system"
    tags = ("systemd", "services")
    Config = SystemdConfig
    metrics = (
        Metric("systemd_units", "", "gauge", "loaded units by type and active state"),
        Metric("systemd_units_failed", "", "gauge", "units in the failed state"),
        Metric("systemd_units_not_found", "", "gauge", "units referenced but with no unit file"),
        Metric("systemd_unit_active", "", "gauge", "1 while a configured unit is active"),
    )

    config: SystemdConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._failed: list[str] | None = None

    def unavailable(self) -> str | None:
        missing = command.missing(self.config.command)
        if missing:
            return missing
        if self.config.command == ("systemctl",) and not Path("/run/systemd/system").is_dir():
            return "not booted with systemd (no /run/systemd/system)"
        return None

    def _args(self, *extra: str) -> list[str]:
        scope = ["--user"] if self.config.scope == "user" else []
        return [*scope, "list-units", "--all", "--no-pager", *extra]

    def units(self) -> list[Unit]:
        timeout = self.config.command_timeout
        try:
            out = command.run(self.config.command, self._args("--output=json"), timeout=timeout)
            if out.stdout.lstrip().startswith("["):
                return parse_json(out.stdout)
        except command.CommandError as exc:
            if "json" not in str(exc).lower():
                raise
        # systemd before 246: the table.
        out = command.run(self.config.command, self._args(), timeout=timeout)
        return parse_text(out.stdout)

    def collect(self, sink: Sink) -> None:
        units = self.units()
        counts: dict[tuple[str, str], int] = {}
        for unit in units:
            if unit.load == "not-found" or unit.type == "":
                continue
            counts[unit.type, unit.active] = counts.get((unit.type, unit.active), 0) + 1
        for (kind, state), count in sorted(counts.items()):
            sink.add("systemd_units", float(count), {"type": kind, "state": state})
        failed = sorted(
            u.unit
            for u in units
            if u.active == "failed" and u.unit not in self.config.ignore_failed
        )
        sink.add("systemd_units_failed", float(len(failed)))
        sink.add("systemd_units_not_found", float(sum(u.load == "not-found" for u in units)))
        by_name = {u.unit: u for u in units}
        for name in self.config.units:
            found = by_name.get(name)
            sink.add(
                "systemd_unit_active",
                1.0 if found is not None and found.active == "active" else 0.0,
                {"unit": name},
            )
        if failed != self._failed and (self._failed is not None or failed):
            details = [
                {"unit": n, "sub": by_name[n].sub, "description": by_name[n].description}
                for n in failed
            ]
            sink.event(
                "systemd_failed_units",
                f"{len(failed)} failed: {', '.join(failed)}" if failed else "no failed units",
                {"failed": details, "was": self._failed},
                "error" if failed else "info",
            )
        self._failed = failed
