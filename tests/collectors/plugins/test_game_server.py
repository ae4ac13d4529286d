"""game_server: real local servers in the test speaking the protocols: Minecraft's server list
ping over TCP (handshake, status, ping) and Source's A2S_INFO over UDP (with the challenge
round servers have sent since 2020)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.game_server import (
    GameError,
    GameServerConfig,
    GameServerPlugin,
    Server,
)
from unity.sdk import ConfigError

# A Paper 1.21.4 status answer (the JSON the notchian server sends, protocol 769).
STATUS = {
    "version": {"name": "Paper 1.21.4", "protocol": 769},
    "enforcesSecureChat": True,
    "description": {"text": "", "extra": [{"text": "Home ", "color": "gold"}, {"text": "SMP"}]},
    "players": {
        "max": 20,
        "online": 3,
        "sample": [
            {"name": "alice", "id": "4566e69f-c907-48ee-8d71-d7ba5aa00d20"},
            {"name": "bob", "id": "069a79f4-44e9-4726-a5be-fca90e38aaf5"},
        ],
    },
}


def varint(value: int) -> bytes:
    out = b""
    while True:
        byte = value & 0x7F
        value >>= 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def read_varint(sock: socket.socket) -> int:
    result, shift = 0, 0
    while True:
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError("closed")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7


def read_packet(sock: socket.socket) -> bytes:
    length = read_varint(sock)
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def send_packet(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(varint(len(payload)) + payload)


@contextmanager
def minecraft_server(status: dict[str, Any]) -> Iterator[tuple[int, list[bytes]]]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so the loop sees `stop` (close() does not wake accept())
    stop = threading.Event()
    seen: list[bytes] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                try:
                    handshake = read_packet(conn)
                    seen.append(handshake)
                    while True:
                        packet = read_packet(conn)
                        if packet == b"\x00":  # status request
                            body = json.dumps(status).encode()
                            send_packet(conn, b"\x00" + varint(len(body)) + body)
                        elif packet[:1] == b"\x01":  # ping: echo the long
                            send_packet(conn, packet)
                except (ConnectionError, OSError):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def a2s_info(name: str, players: int) -> bytes:
    """An A2S_INFO answer: header, protocol 17, strings, app id, counts, then the version."""
    body = b"I" + bytes([17])
    for text in (name, "Midgard", "valheim", "Valheim"):
        body += text.encode() + b"\x00"
    body += struct.pack("<h", 0) + bytes([players, 10, 0]) + b"d" + b"l" + bytes([1, 0])
    body += b"0.219.16\x00"
    return b"\xff\xff\xff\xff" + body


@contextmanager
def source_server(name: str, players: int) -> Iterator[tuple[int, list[bytes]]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()
    challenge = b"\x5a\x1b\x9c\x33"
    seen: list[bytes] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(1400)
            except TimeoutError:
                continue
            except OSError:
                return
            seen.append(data)
            query = b"\xff\xff\xff\xffTSource Engine Query\x00"
            if data == query:  # no challenge yet: ask for it back
                sock.sendto(b"\xff\xff\xff\xffA" + challenge, peer)
            elif data == query + challenge:
                sock.sendto(a2s_info(name, players), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_minecraft_server_list_ping() -> None:
    with minecraft_server(STATUS) as (port, seen):
        p = GameServerPlugin(
            GameServerConfig(servers=[Server("smp", "minecraft", "127.0.0.1", port)])
        )
        assert p.unavailable() is None
        sink = collect(p)
    values = by_key(sink)
    labels = {"server": "smp", "kind": "minecraft"}
    assert values[key("game_up", **labels)] == 1
    assert values[key("game_players", **labels)] == 3
    assert values[key("game_players_max", **labels)] == 20
    assert 0 < values[key("game_latency_seconds", **labels)] < 5  # seconds, not milliseconds
    [event] = sink.events
    assert event.data["version"] == "Paper 1.21.4"
    assert event.data["motd"] == "Home SMP"
    assert event.data["players"] == ["alice", "bob"]
    # The handshake asked for the status state (next state 1) on our port.
    assert seen[0][0] == 0x00 and seen[0][-1] == 0x01
    assert struct.unpack(">H", seen[0][-3:-1])[0] == port


def test_source_a2s_with_challenge() -> None:
    with source_server("Vikings of the LAN", 4) as (port, seen):
        server = Server("valheim", "source", "127.0.0.1", port)
        sink = collect(GameServerPlugin(GameServerConfig(servers=[server])))
    values = by_key(sink)
    labels = {"server": "valheim", "kind": "source"}
    assert values[key("game_players", **labels)] == 4
    assert values[key("game_players_max", **labels)] == 10
    assert values[key("game_latency_seconds", **labels)] < 5
    assert sink.events[0].data["map"] == "Midgard"
    assert sink.events[0].data["version"] == "0.219.16"
    assert len(seen) == 2 and seen[1].endswith(b"\x5a\x1b\x9c\x33")


def test_one_down_degrades_all_down_fails() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()
    with source_server("up", 1) as (port, _):
        servers = [
            Server("up", "source", "127.0.0.1", port),
            Server("gone", "minecraft", "127.0.0.1", dead),
        ]
        p = GameServerPlugin(GameServerConfig(servers=servers, query_timeout=1.0))
        values = by_key(collect(p))
    assert values[key("game_up", server="gone", kind="minecraft")] == 0
    assert values[key("game_up", server="up", kind="source")] == 1
    health = p.health()
    assert health is not None and health.message.startswith(f"gone (127.0.0.1:{dead}): ")
    with pytest.raises(GameError, match="gone"):
        collect(GameServerPlugin(GameServerConfig(servers=servers[1:], query_timeout=1.0)))


def test_a_udp_server_that_never_answers_times_out() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        server = Server("mute", "source", "127.0.0.1", silent.getsockname()[1])
        p = GameServerPlugin(GameServerConfig(servers=[server], query_timeout=0.3))
        with pytest.raises(GameError, match="mute"):
            collect(p)
    finally:
        silent.close()


def test_config_and_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GameServerPlugin().unavailable() == "no servers configured"
    with pytest.raises(ConfigError, match="'servers\\[0\\]\\.address'"):
        GameServerPlugin.parse_config(
            {"servers": [{"name": "a", "kind": "source", "address": "x"}]}
        )
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: None if n == "mcstatus" else real(n))
    p = GameServerPlugin(GameServerConfig(servers=[Server("smp", "minecraft", "127.0.0.1")]))
    assert p.unavailable() == (
        "needs the 'game' extra (mcstatus missing): pip install 'unity-telemetry[game]'"
    )
