"""vpn over OpenVPN status files of versions 1, 2 and 3."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.vpn import VpnPlugin
from unity.collectors.plugins.vpn.status import StatusError, parse
from unity.sdk.testing import run

TESTDATA = Path(__file__).parent / "testdata" / "vpn"
ALICE_SINCE = 1732122131  # 2024-11-20 17:02:11 UTC


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def plugin(*paths: Path) -> VpnPlugin:
    files = [{"path": str(p), "name": p.stem.rsplit("-", 1)[-1]} for p in paths]
    return VpnPlugin(VpnPlugin.parse_config({"status_files": files}))


@pytest.mark.parametrize("version", [1, 2, 3])
def test_each_version_gives_the_same_clients(version: int, zone: None) -> None:
    name = (
        "openvpn-2.4.12-status-v1.txt" if version == 1 else f"openvpn-2.6.12-status-v{version}.txt"
    )
    status = parse((TESTDATA / name).read_text())
    assert status.version == version
    assert status.updated == 1732128001
    clients = {c.common_name: c for c in status.clients}
    alice = clients["alice-laptop"]
    assert (alice.real_address, alice.received, alice.sent) == (
        "203.0.113.10:51234",
        1834567,
        20485761,
    )
    assert alice.connected_since == ALICE_SINCE
    assert "10.8.0.2" in alice.virtual_addresses
    assert status.stats["Max bcast/mcast queue length"] == 1


def test_v1_times_are_local_time_without_a_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        status = parse((TESTDATA / "openvpn-2.4.12-status-v1.txt").read_text())
    finally:
        monkeypatch.undo()
        time.tzset()
    # 17:02:11 in Berlin (UTC+1 in November) is 16:02:11 UTC.
    assert status.clients[0].connected_since == ALICE_SINCE - 3600


def test_v2_prefers_time_t_over_the_local_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        status = parse((TESTDATA / "openvpn-2.6.12-status-v2.txt").read_text())
    finally:
        monkeypatch.undo()
        time.tzset()
    assert status.clients[0].connected_since == ALICE_SINCE
    assert status.clients[1].username == "bob"
    assert status.clients[0].username == ""  # UNDEF


def test_plugin_samples_and_inventory(zone: None) -> None:
    p = plugin(
        TESTDATA / "openvpn-2.6.12-status-v3.txt", TESTDATA / "openvpn-2.6.12-status-v2-empty.txt"
    )
    sink = collect(p)
    found = by_key(sink)
    assert found[key("openvpn_clients", server="v3")] == 2
    assert found[key("openvpn_clients", server="empty")] == 0
    alice = {"server": "v3", "client": "alice-laptop", "address": "203.0.113.10:51234"}
    assert found[key("openvpn_client_receive_bytes", **alice)] == 1834567
    assert found[key("openvpn_client_transmit_bytes", **alice)] == 20485761
    assert found[key("openvpn_client_connected_seconds", **alice)] >= time.time() - ALICE_SINCE - 5
    assert found[key("openvpn_status_age_seconds", server="v3")] > 0
    [event] = sink.events
    assert {c["common_name"] for c in event.data["clients"]} == {"alice-laptop", "bob-phone"}
    assert p.health() is None


async def test_missing_and_wrong_files(tmp_path: Path) -> None:
    client_side = tmp_path / "client.status"
    client_side.write_text("OpenVPN STATISTICS\nUpdated,2024-11-20 18:40:01\nEND\n")
    result = await run(plugin(tmp_path / "nothere.log", client_side))
    assert result.report.status == "error"
    assert "FileNotFoundError" in result.report.message
    assert "a client's status file" in result.report.message
    result = await run(plugin(TESTDATA / "openvpn-2.6.12-status-v2.txt", client_side))
    assert result.report.status == "degraded"
    with pytest.raises(StatusError, match="not an OpenVPN status file"):
        parse("hello\n")


def test_unavailable(tmp_path: Path) -> None:
    assert VpnPlugin().unavailable() == "no status_files configured"
    assert plugin(tmp_path / "x.log").unavailable() == f"no status file at {tmp_path / 'x.log'}"
