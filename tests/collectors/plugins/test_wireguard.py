"""wireguard over recorded `wg show all dump` files and `tailscale status --json`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.collectors import fake_tool
from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.wireguard import WireguardPlugin
from unity.collectors.plugins.wireguard.parse import ParseError, parse_dump
from unity.sdk.testing import run

TESTDATA = Path(__file__).parent / "testdata" / "wireguard"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "wireguard"
PRIVATE_KEY = "iB9Lq1s8vV4Tc6sT7Nw0yPdO5m4e3Q2Z1a0bC9dE8fE="


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared fixtures absent: {path}")
    return path


def with_wg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dump: Path) -> WireguardPlugin:
    fake_tool.install(monkeypatch, tmp_path / "bin", "wg", dump)
    return WireguardPlugin()


def test_handshake_epoch_becomes_an_age(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = with_wg(monkeypatch, tmp_path, TESTDATA / "wg-1.0.20210914-dump.tsv")
    before = time.time()
    sink = collect(p)
    found = by_key(sink)
    seen = {"interface": "wg0", "peer": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="}
    never = {"interface": "wg0", "peer": "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="}
    age = found[key("wireguard_peer_handshake_age_seconds", **seen)]
    # The dump's 1733000000 is a moment, not an age: the age is now minus it.
    assert before - 1733000000 <= age <= time.time() - 1733000000
    assert found[key("wireguard_peer_handshake_recent", **seen)] == 0.0
    assert found[key("wireguard_peer_receive_bytes", **seen)] == 1830188
    assert found[key("wireguard_peer_transmit_bytes", **seen)] == 4011922
    # 0 means never: no age at all, rather than 55 years.
    assert key("wireguard_peer_handshake_age_seconds", **never) not in found
    assert found[key("wireguard_peer_handshake_recent", **never)] == 0.0
    assert found[key("wireguard_peers", interface="wg0")] == 2
    [event] = sink.events
    peers = {p["public_key"]: p for p in event.data["wireguard"]}
    assert peers[never["peer"]]["allowed_ips"] == ["10.8.0.3/32", "192.168.50.0/24"]
    assert peers[never["peer"]]["endpoint"] == ""
    assert peers[seen["peer"]]["persistent_keepalive"] == 25


def test_the_private_key_never_leaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = with_wg(monkeypatch, tmp_path, TESTDATA / "wg-1.0.20210914-dump.tsv")
    sink = collect(p)
    text = repr(sink.samples) + json.dumps([e.data for e in sink.events])
    assert PRIVATE_KEY not in text
    bad = "wg0\t" + PRIVATE_KEY + "\tpub\tnot-a-port\toff\n"
    with pytest.raises(ParseError) as info:
        parse_dump(bad)
    assert PRIVATE_KEY not in str(info.value)


@pytest.mark.parametrize(
    ("name", "peers", "handshaked"),
    [("wgexporter-issue19-dump.tsv", 17, None), ("wgexporter-multi-iface-dump.tsv", 7, 2)],
)
def test_recorded_dumps(
    name: str, peers: int, handshaked: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = shared(name)
    p = with_wg(monkeypatch, tmp_path, path)
    found = by_key(collect(p))
    rx = [k for k in found if k[0] == "wireguard_peer_receive_bytes"]
    assert len(rx) == peers
    ages = [v for k, v in found.items() if k[0] == "wireguard_peer_handshake_age_seconds"]
    epochs = [
        int(line.split("\t")[5])
        for line in path.read_text().splitlines()
        if len(line.split("\t")) == 9
    ]
    assert len(ages) == sum(1 for e in epochs if e)
    if handshaked is not None:
        assert len(ages) == handshaked
    assert all(age > 0 for age in ages)
    total = sum(v for k, v in found.items() if k[0] == "wireguard_peers")
    assert total == peers  # peers of interfaces without their own line are counted too


def test_tailscale_peers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tool.install(
        monkeypatch, tmp_path / "bin", "tailscale", TESTDATA / "tailscale-1.76-status.json"
    )
    p = WireguardPlugin(WireguardPlugin.parse_config({"wireguard": False, "tailscale": True}))
    sink = collect(p)
    found = by_key(sink)
    assert found[key("tailscale_up")] == 1.0
    assert found[key("tailscale_peers")] == 3
    assert found[key("tailscale_peers_online")] == 2
    assert found[key("tailscale_peer_online", peer="pixel-8.tail4c2e1.ts.net")] == 0.0
    assert key("tailscale_peer_handshake_age_seconds", peer="pixel-8.tail4c2e1.ts.net") not in found
    assert found[key("tailscale_peer_handshake_age_seconds", peer="laptop.tail4c2e1.ts.net")] > 0
    assert found[key("tailscale_peer_receive_bytes", peer="laptop.tail4c2e1.ts.net")] == 18653240


async def test_a_failing_wg_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "denied.txt"
    out.write_text("Unable to access interface: Operation not permitted\n")
    fake_tool.install(monkeypatch, tmp_path / "bin", "wg", out, exit_code=1)
    result = await run(WireguardPlugin())
    assert result.report.status == "error"
    assert "wg exited 1: Unable to access interface" in result.report.message


def test_unavailable() -> None:
    p = WireguardPlugin(WireguardPlugin.parse_config({"wg_command": ["/nonexistent/wg"]}))
    assert p.unavailable() == "/nonexistent/wg not executable"
    off = WireguardPlugin(WireguardPlugin.parse_config({"wireguard": False}))
    assert off.unavailable() == "neither wireguard nor tailscale is enabled"
