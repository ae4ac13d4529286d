"""certificate against local TLS servers whose certificates a test CA made."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.testca import Leaf, TestCA
from unity.collectors.plugins.certificate import CertificatePlugin


class TlsServer:
    """Accepts connections and completes (or fails) the TLS handshake, then hangs up."""

    def __init__(self, leaf: Leaf) -> None:
        self.context = leaf.server_context()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


@pytest.fixture
def servers(ca: TestCA) -> Iterator[dict[str, int]]:
    made = {
        "valid": TlsServer(ca.leaf("valid", days=60, chain=True)),
        "expired": TlsServer(ca.leaf("expired", days=-3)),
        "selfsigned": TlsServer(ca.leaf("selfsigned", days=200, self_signed=True)),
        "wronghost": TlsServer(ca.leaf("wronghost", ("git.example.org",), days=20)),
    }
    yield {name: server.port for name, server in made.items()}
    for server in made.values():
        server.close()


def plugin(**config: Any) -> CertificatePlugin:
    return CertificatePlugin(CertificatePlugin.parse_config(config))


def test_four_cases_read_even_when_verification_fails(ca: TestCA, servers: dict[str, int]) -> None:
    endpoints = [
        {"host": "localhost", "port": port, "name": name} for name, port in servers.items()
    ]
    p = plugin(endpoints=endpoints, ca_file=str(ca.pem))
    sink = collect(p)
    found = by_key(sink)
    assert found[key("certificate_valid", target="valid")] == 1.0
    for bad in ("expired", "selfsigned", "wronghost"):
        assert found[key("certificate_valid", target=bad)] == 0.0
    assert 59.9 < found[key("certificate_days_left", target="valid")] <= 60
    assert -3.01 < found[key("certificate_days_left", target="expired")] < -2.99
    assert 199.9 < found[key("certificate_days_left", target="selfsigned")] <= 200
    assert 19.9 < found[key("certificate_days_left", target="wronghost")] <= 20
    assert p.health() is None

    [event] = sink.events
    assert event.severity == "warning"
    docs = {d["target"]: d for d in event.data["certificates"]}
    assert docs["valid"]["issuer"] == "CN=Unity Test CA"
    assert docs["valid"]["sans"] == ["localhost", "127.0.0.1"]
    assert docs["selfsigned"]["self_signed"] is True
    assert docs["wronghost"]["sans"] == ["git.example.org"]
    assert "expired" in docs["expired"]["verify_error"]
    assert "self-signed" in docs["selfsigned"]["verify_error"]
    assert "Hostname mismatch" in docs["wronghost"]["verify_error"]


def test_without_the_test_ca_the_valid_one_does_not_verify(servers: dict[str, int]) -> None:
    found = by_key(collect(plugin(endpoints=[{"host": "127.0.0.1", "port": servers["valid"]}])))
    label = f"127.0.0.1:{servers['valid']}"
    assert found[key("certificate_valid", target=label)] == 0.0
    assert found[key("certificate_days_left", target=label)] > 59


def test_files_and_an_unreachable_server(ca: TestCA, tmp_path: Path) -> None:
    leaf = ca.leaf("file", days=12, chain=True)
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    p = plugin(
        files=[str(leaf.cert), str(tmp_path / "missing.pem"), str(junk)],
        endpoints=[{"host": "127.0.0.1", "port": closed, "name": "down"}],
    )
    found = by_key(collect(p))
    assert 11.9 < found[key("certificate_days_left", target=str(leaf.cert))] <= 12
    assert key("certificate_valid", target=str(leaf.cert)) not in found  # files are not verified
    health = p.health()
    assert health is not None and health.status == "degraded"
    assert "missing.pem: FileNotFoundError" in health.message
    assert "junk.pem: not a PEM or DER certificate" in health.message
    assert "down: ConnectionRefusedError" in health.message


def test_unavailable() -> None:
    assert CertificatePlugin().unavailable() == "no endpoints or files configured"
    assert plugin(files=["/etc/ssl/x.pem"]).unavailable() is None
