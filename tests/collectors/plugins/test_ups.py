"""ups: a local server speaking NUT's network protocol, upsc as the fallback, recorded dumps."""

from __future__ import annotations

import socketserver
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.collectors.fake_tool import calls, install
from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.ups import (
    FLAGS,
    UpsConfig,
    UpsError,
    UpsPlugin,
    apcupsd,
    flags,
    parse_upsc,
    readings,
)
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "ups"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "nut"
SHARED_APCUPSD = SHARED.parent / "ups"


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Upsd:
    """What the fake upsd serves and what it was told."""

    ups: dict[str, dict[str, str] | str] = field(default_factory=dict)  # str: an ERR reason
    password: str = ""
    received: list[str] = field(default_factory=list)
    port: int = 0


class Handler(socketserver.StreamRequestHandler):
    server: socketserver.ThreadingTCPServer

    def answer(self, *lines: str) -> None:
        self.wfile.write("".join(f"{line}\n" for line in lines).encode())

    def handle(self) -> None:
        upsd: Upsd = self.server.upsd  # type: ignore[attr-defined]
        authed = not upsd.password
        for raw in self.rfile:
            line = raw.decode().rstrip("\n")
            upsd.received.append(line)
            words = line.split()
            if words[:1] == ["USERNAME"]:
                self.answer("OK")
            elif words[:1] == ["PASSWORD"]:
                authed = words[1:] == [upsd.password]
                self.answer("OK" if authed else "ERR ACCESS-DENIED")
            elif words[:1] == ["LOGOUT"]:
                self.answer("OK Goodbye")
                return
            elif not authed:
                self.answer("ERR ACCESS-DENIED")
            elif words == ["LIST", "UPS"]:
                rows = [f"UPS {name} {quote('a UPS')}" for name in upsd.ups]
                self.answer("BEGIN LIST UPS", *rows, "END LIST UPS")
            elif words[:2] == ["LIST", "VAR"] and len(words) == 3:
                found = upsd.ups.get(words[2])
                if found is None:
                    self.answer("ERR UNKNOWN-UPS")
                elif isinstance(found, str):
                    self.answer(f"ERR {found}")
                else:
                    rows = [f"VAR {words[2]} {k} {quote(v)}" for k, v in found.items()]
                    self.answer(f"BEGIN LIST VAR {words[2]}", *rows, f"END LIST VAR {words[2]}")
            else:
                self.answer("ERR UNKNOWN-COMMAND")


@pytest.fixture
def upsd() -> Iterator[Upsd]:
    state = Upsd()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.upsd = state  # type: ignore[attr-defined]
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def dump(name: str) -> dict[str, str]:
    return parse_upsc((DATA / name).read_text())


def net(upsd: Upsd, **kw: object) -> UpsPlugin:
    return UpsPlugin(UpsConfig(port=upsd.port, **kw))  # type: ignore[arg-type]


def status_flags(
    values: Mapping[tuple[str, frozenset[tuple[str, str]]], float], ups: str
) -> set[str]:
    return {
        dict(k[1])["flag"]
        for k, v in values.items()
        if k[0] == "ups_status" and dict(k[1])["ups"] == ups and v == 1
    }


def test_network_protocol_every_ups(upsd: Upsd) -> None:
    upsd.ups = {"rack": dump("eaton-ob-lb.upsc"), "desk": dump("backups-ol.upsc")}
    plugin = net(upsd)
    assert plugin.unavailable() is None
    sink = collect(plugin)
    values = by_key(sink)
    assert upsd.received[:3] == ["LIST UPS", "LIST VAR rack", "LIST VAR desk"]
    assert values[key("ups_battery_charge_percent", ups="rack")] == 18
    assert values[key("ups_battery_runtime_seconds", ups="rack")] == 214
    assert values[key("ups_input_voltage_volts", ups="rack")] == 0
    assert values[key("ups_output_voltage_volts", ups="rack")] == 230
    assert values[key("ups_temperature_celsius", ups="rack")] == 31.4
    assert values[key("ups_power_watts", ups="rack", source="reported")] == 498
    # No ups.realpower: watts derived from load and nominal power (23 % of 865 W).
    assert values[key("ups_power_watts", ups="desk", source="derived")] == pytest.approx(198.95)
    assert status_flags(values, "rack") == {"OB", "DISCHRG", "LB"}
    assert status_flags(values, "desk") == {"OL"}
    assert sum(1 for k in values if k[0] == "ups_status") == 2 * len(FLAGS)
    events = {e.data["ups"]: e for e in sink.events}
    assert events["rack"].kind == "ups_status" and events["rack"].severity == "critical"
    assert events["rack"].data["device.model"] == "Eaton 5P 1550"
    assert events["desk"].severity == "info"


def test_status_change_sends_one_event(upsd: Upsd) -> None:
    desk = dump("backups-ol.upsc")
    upsd.ups = {"desk": desk}
    plugin = net(upsd, ups=("desk",))
    collect(plugin)
    assert collect(plugin).events == []
    desk["ups.status"] = "OB DISCHRG"
    sink = collect(plugin)
    [event] = sink.events
    assert (event.message, event.severity) == ("desk: OB DISCHRG (was OL)", "warning")
    assert event.data["was"] == "OL"
    assert status_flags(by_key(sink), "desk") == {"OB", "DISCHRG"}
    desk["ups.status"] = "OL CHRG"
    [back] = collect(plugin).events
    assert back.severity == "info" and back.data["status"] == "OL CHRG"


def test_one_stale_ups_degrades_the_run(upsd: Upsd) -> None:
    upsd.ups = {"rack": "DATA-STALE", "desk": dump("backups-ol.upsc")}
    plugin = net(upsd)
    values = by_key(collect(plugin))
    assert key("ups_load_percent", ups="desk") in values
    assert not any(dict(k[1]).get("ups") == "rack" for k in values)
    health = plugin.health()
    assert health is not None and health.status == "degraded"
    assert health.message == f"rack: upsd 127.0.0.1:{upsd.port} refused 'LIST VAR rack': DATA-STALE"
    upsd.ups = {"rack": "DRIVER-NOT-CONNECTED"}
    with pytest.raises(UpsError, match="DRIVER-NOT-CONNECTED"):
        collect(plugin)


def test_password_from_the_environment_never_in_errors(
    upsd: Upsd, monkeypatch: pytest.MonkeyPatch
) -> None:
    upsd.ups = {"desk": dump("backups-ol.upsc")}
    upsd.password = "s3cret-nut"
    monkeypatch.setenv("NUT_PASSWORD", "s3cret-nut")
    plugin = net(upsd, username="monuser", password_env="NUT_PASSWORD")
    assert key("ups_load_percent", ups="desk") in by_key(collect(plugin))
    assert upsd.received[:2] == ["USERNAME monuser", "PASSWORD s3cret-nut"]
    monkeypatch.setenv("NUT_PASSWORD", "wrong-one")
    with pytest.raises(UpsError) as caught:
        collect(plugin)
    assert str(caught.value) == (f"upsd 127.0.0.1:{upsd.port} refused 'PASSWORD': ACCESS-DENIED")
    assert "wrong-one" not in str(caught.value)
    # The protocol has no encryption here: a password never goes to another host.
    remote = UpsPlugin(UpsConfig(host="192.0.2.10", password_env="NUT_PASSWORD"))
    with pytest.raises(UpsError, match=r"refusing to send a password in clear to 192\.0\.2\.10"):
        collect(remote)


def test_no_upsd_is_unavailable_and_a_failed_run() -> None:
    closed = UpsPlugin(UpsConfig(port=1))
    reason = closed.unavailable()
    assert reason is not None and reason.startswith("no upsd at 127.0.0.1:1 (")
    with pytest.raises(UpsError, match=r"^upsd 127\.0\.0\.1:1: "):
        collect(closed)


def test_upsc_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = install(monkeypatch, tmp_path, "upsc", DATA / "eaton-ob-lb.upsc")
    plugin = UpsPlugin(UpsConfig(source="upsc", ups=("rack",)))
    assert plugin.unavailable() is None
    values = by_key(collect(plugin))
    assert calls(recorded) == [["rack@127.0.0.1:3493"]]
    assert values[key("ups_battery_charge_percent", ups="rack")] == 18
    assert status_flags(values, "rack") == {"OB", "DISCHRG", "LB"}
    assert UpsPlugin(UpsConfig(source="upsc", command=("no-upsc",))).unavailable() == (
        "no-upsc not found on PATH"
    )


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="'password'"):
        UpsPlugin.parse_config({"password": "in-the-file"})
    with pytest.raises(ConfigError, match="source"):
        UpsPlugin.parse_config({"source": "snmp"})


# NUT DDL dumps of real UPSes (../shared/fixtures/SOURCES.md): file -> status flags.
RECORDED = {
    "ddl-apc-backups-es750-OL-CHRG-LB.dev": {"OL", "CHRG", "LB"},
    "ddl-apc-backups-es850g2-OL-2.8.0.dev": {"OL"},
    "ddl-apc-smartups2200-OB-DISCHRG.dev": {"OB", "DISCHRG"},
    "ddl-apc-smartups750-modbus-OL-HE.dev": {"OL", "HE"},
    "ddl-cyberpower-bl1250u-OB.dev": {"OB"},
    "ddl-cyberpower-cp900avr-OB-DISCHRG.dev": {"OB", "DISCHRG"},
    "ddl-cyberpower-value2200-FSD-OL.dev": {"FSD", "OL"},
    "ddl-eaton-93ps-snmp-ALARM-OL.dev": {"ALARM", "OL"},
    "ddl-minibox-openups-OB-DISCHRG.dev": {"OB", "DISCHRG"},
    "ddl-pijuice-LB-OL-CHRG.dev": {"LB", "OL", "CHRG"},
    "telegraf-cp900epfclcd-full-upsc.dev": {"OL"},
}


def shared(name: str) -> dict[str, str]:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    return parse_upsc((SHARED / name).read_text())


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_dumps(name: str, upsd: Upsd) -> None:
    variables = shared(name)
    assert flags(variables) == RECORDED[name]
    assert not any(v.startswith("#") or "\t#" in v for v in variables.values())
    # Served over the protocol, the plugin publishes what the dump holds.
    upsd.ups = {"ups": variables}
    values = by_key(collect(net(upsd)))
    assert status_flags(values, "ups") == RECORDED[name] & set(FLAGS)
    if "battery.charge" in variables:
        assert values[key("ups_battery_charge_percent", ups="ups")] == float(
            variables["battery.charge"]
        )


def test_recorded_awkward_values() -> None:
    apc = readings(shared("ddl-apc-smartups2200-OB-DISCHRG.dev"))
    assert apc["ups_battery_runtime_seconds"] == (65535.0, {})  # "#BAD: overflow?" stripped
    # A three-phase SNMP UPS: "417.00" style numbers, per-phase values only, no load to derive from.
    eaton = readings(shared("ddl-eaton-93ps-snmp-ALARM-OL.dev"))
    assert eaton["ups_battery_voltage_volts"] == (417.0, {})
    assert "ups_power_watts" not in eaton and "ups_load_percent" not in eaton
    watts, labels = readings(shared("ddl-cyberpower-cp900avr-OB-DISCHRG.dev"))["ups_power_watts"]
    assert watts == pytest.approx(13 * 68 / 100)
    assert labels == {"source": "derived"}


def test_every_recorded_dump_is_covered() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    # types.dev lists each variable's type (NUMBER, STRING:10), not values.
    others = {"telegraf-cp900epfclcd-full-types.dev"}
    assert {p.name for p in SHARED.glob("*.dev")} == set(RECORDED) | others


class Nis(socketserver.StreamRequestHandler):
    """apcupsd's NIS: a length-prefixed ``status`` in, length-prefixed lines out, 0 ends."""

    server: socketserver.ThreadingTCPServer

    def handle(self) -> None:
        size = struct.unpack(">H", self.rfile.read(2))[0]
        asked = self.rfile.read(size)
        self.server.asked.append(asked)  # type: ignore[attr-defined]
        for line in self.server.status.splitlines():  # type: ignore[attr-defined]
            data = (line + "\n").encode()
            self.wfile.write(struct.pack(">H", len(data)) + data)
        self.wfile.write(struct.pack(">H", 0))


@pytest.fixture
def nis() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Nis)
    server.daemon_threads = True
    server.asked = []  # type: ignore[attr-defined]
    server.status = ""  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def apc(server: socketserver.ThreadingTCPServer) -> UpsPlugin:
    return UpsPlugin(UpsConfig(source="apcupsd", port=server.server_address[1]))


def test_apcupsd_over_nis(nis: socketserver.ThreadingTCPServer) -> None:
    nis.status = (DATA / "apcupsd-onbatt.status").read_text()  # type: ignore[attr-defined]
    plugin = apc(nis)
    assert plugin.unavailable() is None
    sink = collect(plugin)
    values = by_key(sink)
    assert nis.asked == [b"status"]  # type: ignore[attr-defined]
    assert values[key("ups_battery_charge_percent", ups="backups")] == 9
    assert values[key("ups_battery_runtime_seconds", ups="backups")] == 150  # 2.5 minutes
    assert values[key("ups_input_voltage_volts", ups="backups")] == 0
    assert values[key("ups_power_watts", ups="backups", source="derived")] == pytest.approx(
        0.31 * 390
    )
    assert status_flags(values, "backups") == {"OB", "LB"}
    [event] = sink.events
    assert event.severity == "critical" and event.data["device.model"] == "Back-UPS XS 700U"
    assert UpsPlugin(UpsConfig(source="apcupsd")).port == 3551
    assert UpsPlugin().port == 3493


def test_apcupsd_commlost_fails_the_run(nis: socketserver.ThreadingTCPServer) -> None:
    nis.status = "APC      : 001,017,0427\nSTATUS   : COMMLOST\nEND APC  : x\n"  # type: ignore[attr-defined]
    with pytest.raises(UpsError, match=r"lost contact with the UPS \(COMMLOST\)"):
        collect(apc(nis))
    closed = UpsPlugin(UpsConfig(source="apcupsd", port=1))
    assert (closed.unavailable() or "").startswith("no apcupsd at 127.0.0.1:1 (")
    with pytest.raises(UpsError, match=r"^apcupsd 127\.0\.0\.1:1: "):
        collect(closed)


# apcupsd `apcaccess status` recordings (../shared/fixtures/SOURCES.md).
APCUPSD_RECORDED = {
    "netdata-apcupsd-status.txt": ("UPS_IDEN", {"OL"}, 100.0, 130 * 60.0),
    "netdata-apcupsd-status-commlost.txt": ("test", None, None, None),
}


@pytest.mark.parametrize("name", sorted(APCUPSD_RECORDED))
def test_recorded_apcupsd(name: str, nis: socketserver.ThreadingTCPServer) -> None:
    if not SHARED_APCUPSD.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED_APCUPSD}")
    text = (SHARED_APCUPSD / name).read_text()
    ups, on, charge, runtime = APCUPSD_RECORDED[name]
    found = apcupsd.variables(apcupsd.parse_status(text))
    if on is None:
        assert found == "apcupsd lost contact with the UPS (COMMLOST)"
        return
    assert isinstance(found, dict) and flags(found) == on
    nis.status = text  # type: ignore[attr-defined]
    values = by_key(collect(apc(nis)))
    assert values[key("ups_battery_charge_percent", ups=ups)] == charge
    assert values[key("ups_battery_runtime_seconds", ups=ups)] == runtime
    assert values[key("ups_temperature_celsius", ups=ups)] == 32.8  # "32.8 C Internal"
    assert values[key("ups_power_nominal_watts", ups=ups)] == 600


def test_every_recorded_apcupsd_file_is_covered() -> None:
    if not SHARED_APCUPSD.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED_APCUPSD}")
    assert {p.name for p in SHARED_APCUPSD.iterdir()} == set(APCUPSD_RECORDED)
