"""tcp against real local TCP and UDP servers started by the test."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator, Mapping

import pytest

from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.tcp import TcpPlugin
from unity.sdk import ConfigError


class Banner(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n")


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        if data == b"\x00\x01PING":
            sock.sendto(b"\x00\x02PONG", self.client_address)
        # anything else gets no answer, like a real service ignoring a bad datagram


class TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True


@pytest.fixture
def servers() -> Iterator[tuple[int, int]]:
    tcp = TcpServer(("127.0.0.1", 0), Banner)
    udp = socketserver.UDPServer(("127.0.0.1", 0), Echo)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (tcp, udp)]
    for thread in threads:
        thread.start()
    yield tcp.server_address[1], udp.server_address[1]
    for server in (tcp, udp):
        server.shutdown()
        server.server_close()


def closed_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def plugin(*targets: Mapping[str, object]) -> TcpPlugin:
    return TcpPlugin(TcpPlugin.parse_config({"targets": list(targets)}))


def test_tcp_connect_latency_and_banner(servers: tuple[int, int]) -> None:
    port, _ = servers
    p = plugin(
        {"host": "127.0.0.1", "port": port},
        {"host": "localhost", "port": port, "name": "ssh", "expect": "SSH-2.0"},
    )
    found = by_key(collect(p))
    assert found[key("tcp_up", target=f"127.0.0.1:{port}")] == 1.0
    assert found[key("tcp_connect_seconds", target=f"127.0.0.1:{port}")] > 0
    assert found[key("tcp_up", target="ssh")] == 1.0
    assert found[key("tcp_response_seconds", target="ssh")] >= 0
    assert p.health() is None


def test_tcp_refused_and_wrong_banner_are_down_with_reasons(servers: tuple[int, int]) -> None:
    port, _ = servers
    refused = closed_port(socket.SOCK_STREAM)
    p = plugin(
        {"host": "127.0.0.1", "port": refused, "name": "db"},
        {
            "host": "127.0.0.1",
            "port": port,
            "name": "smtp",
            "expect": "220 ",
            "connect_timeout": 0.3,
        },
    )
    found = by_key(collect(p))
    assert found[key("tcp_up", target="db")] == 0.0
    assert key("tcp_connect_seconds", target="db") not in found
    assert found[key("tcp_up", target="smtp")] == 0.0
    health = p.health()
    assert health is not None and health.status == "degraded"
    assert "tcp db: ConnectionRefusedError" in health.message
    assert "tcp smtp: " in health.message and "closed before sending '220 '" in health.message


def test_udp_payload_and_expected_answer(servers: tuple[int, int]) -> None:
    _, port = servers
    p = plugin(
        {
            "host": "127.0.0.1",
            "port": port,
            "protocol": "udp",
            "send_hex": "000150494e47",
            "expect": "PONG",
            "name": "game",
        },
    )
    found = by_key(collect(p))
    assert found[key("udp_up", target="game")] == 1.0
    assert found[key("udp_response_seconds", target="game")] > 0


def test_udp_silence_and_refusal_are_down(servers: tuple[int, int]) -> None:
    _, port = servers
    p = plugin(
        {
            "host": "127.0.0.1",
            "port": port,
            "protocol": "udp",
            "send": "hello",
            "name": "quiet",
            "connect_timeout": 0.3,
        },
        {
            "host": "127.0.0.1",
            "port": closed_port(socket.SOCK_DGRAM),
            "protocol": "udp",
            "send": "x",
            "name": "closed",
            "connect_timeout": 2.0,
        },
    )
    found = by_key(collect(p))
    assert found[key("udp_up", target="quiet")] == 0.0
    assert found[key("udp_up", target="closed")] == 0.0
    health = p.health()
    assert health is not None
    assert "udp quiet: TimeoutError" in health.message
    assert "udp closed: ConnectionRefusedError" in health.message


def test_config_is_checked_at_load() -> None:
    with pytest.raises(ConfigError, match="udp target needs send"):
        TcpPlugin.parse_config({"targets": [{"host": "h", "port": 53, "protocol": "udp"}]})
    with pytest.raises(ConfigError, match="65535"):
        TcpPlugin.parse_config({"targets": [{"host": "h", "port": 70000}]})
    with pytest.raises(ConfigError, match="protocol"):
        TcpPlugin.parse_config({"targets": [{"host": "h", "port": 1, "protocol": "sctp"}]})
    with pytest.raises(ConfigError, match="prot"):
        TcpPlugin.parse_config({"targets": [{"host": "h", "port": 1, "prot": "tcp"}]})
    assert TcpPlugin().unavailable() == "no targets configured"
