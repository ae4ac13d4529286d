"""dns against a local DNS responder, fake Pi-hole and AdGuard APIs, a fake unbound-control."""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests.collectors import fake_tool
from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.dns import DnsPlugin
from unity.sdk.testing import run

TESTDATA = Path(__file__).parent / "testdata" / "dns"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures"
PIHOLE_SUMMARY = SHARED / "apps" / "netdata-pihole-v6.0.5-stats_summary.json"

ZONE = {
    ("nas.home.arpa.", "A"): ["192.168.1.10"],
    ("nas.home.arpa.", "AAAA"): ["fd00::10"],
    ("multi.home.arpa.", "A"): ["10.0.0.2", "10.0.0.1"],
}


def answer(wire: bytes) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    question = query.question[0]
    name, kind = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
    records = ZONE.get((name, kind))
    if records is None and not any(n == name for n, _ in ZONE):
        response.set_rcode(dns.rcode.NXDOMAIN)
    elif records:
        response.answer.append(dns.rrset.from_text_list(name, 300, "IN", kind, records))
    return response.to_wire()


class Udp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(answer(data), self.client_address)


class Tcp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        size = int.from_bytes(self.request.recv(2), "big")
        data = b""
        while len(data) < size:
            data += self.request.recv(size - len(data))
        reply = answer(data)
        self.request.sendall(len(reply).to_bytes(2, "big") + reply)


@pytest.fixture
def responder() -> Iterator[int]:
    # One port for both protocols: the TCP side of a free UDP port may be taken by someone
    # else, so try a few.
    for _ in range(20):
        udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
        port = udp.server_address[1]
        try:
            tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
        except OSError:
            udp.server_close()
            continue
        break
    else:
        pytest.fail("no port free for both UDP and TCP")
    servers = (udp, tcp)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port
    for server in servers:
        server.shutdown()
        server.server_close()


def plugin(**config: Any) -> DnsPlugin:
    return DnsPlugin(DnsPlugin.parse_config(config))


def test_resolution_time_and_answers_over_udp_and_tcp(responder: int) -> None:
    at = {"server": "127.0.0.1", "port": responder}
    p = plugin(
        queries=[
            {"name": "nas.home.arpa", **at, "expect": ["192.168.1.10"]},
            {"name": "nas.home.arpa", "type": "AAAA", **at, "protocol": "tcp"},
            {"name": "multi.home.arpa", **at},
            {"name": "ads.example.com", **at, "expect_rcode": "NXDOMAIN"},
        ]
    )
    sink = collect(p)
    found = by_key(sink)
    nas = {"name": "nas.home.arpa", "type": "A", "server": f"127.0.0.1:{responder}"}
    assert found[key("dns_lookup_up", **nas)] == 1.0
    assert found[key("dns_lookup_seconds", **nas)] > 0
    assert found[key("dns_lookup_answers", **nas)] == 1.0
    assert found[key("dns_lookup_up", **{**nas, "type": "AAAA"})] == 1.0
    assert found[key("dns_lookup_answers", **{**nas, "name": "multi.home.arpa"})] == 2.0
    assert found[key("dns_lookup_up", **{**nas, "name": "ads.example.com"})] == 1.0
    assert p.health() is None
    [event] = sink.events
    docs = {(d["name"], d["type"]): d for d in event.data["lookups"]}
    assert docs[("multi.home.arpa", "A")]["answers"] == ["10.0.0.1", "10.0.0.2"]
    assert docs[("nas.home.arpa", "AAAA")]["answers"] == ["fd00::10"]
    assert docs[("ads.example.com", "A")]["rcode"] == "NXDOMAIN"


def test_wrong_answer_nxdomain_and_silence_are_down(responder: int) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        at = {"server": "127.0.0.1", "port": responder}
        p = DnsPlugin(
            DnsPlugin.parse_config(
                {
                    "queries": [
                        {"name": "nas.home.arpa", **at, "expect": ["192.168.1.99"]},
                        {"name": "gone.home.arpa", **at},
                        {
                            "name": "nas.home.arpa",
                            "server": "127.0.0.1",
                            "port": silent.getsockname()[1],
                        },
                    ],
                    "query_timeout": 0.3,
                }
            )
        )
        found = by_key(collect(p))
    finally:
        silent.close()
    ups = [v for k, v in found.items() if k[0] == "dns_lookup_up"]
    assert ups == [0.0, 0.0, 0.0]
    health = p.health()
    assert health is not None and health.status == "degraded"
    assert "answers lack 192.168.1.99" in health.message
    assert "rcode NXDOMAIN, expected NOERROR" in health.message
    assert "Timeout" in health.message


class Apps(BaseHTTPRequestHandler):
    server: AppServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append(("POST", self.path))
        if self.path == "/api/auth" and body == {"password": "pi-secret"}:
            self.reply(
                {
                    "session": {
                        "valid": True,
                        "totp": False,
                        "sid": "vFA+EP4MQ5JJvJg+3Q2Jnw=",
                        "csrf": "Ux87YTIiMOf/GKCefVIOMw=",
                        "validity": 300,
                    }
                }
            )
        else:
            self.reply(
                {
                    "session": {
                        "valid": False,
                        "totp": False,
                        "sid": None,
                        "validity": -1,
                        "message": "password incorrect",
                    }
                },
                401,
            )

    def do_DELETE(self) -> None:
        self.server.seen.append(("DELETE", self.path))
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path))
        if self.path == "/api/stats/summary":
            if self.headers.get("X-FTL-SID") != "vFA+EP4MQ5JJvJg+3Q2Jnw=":
                self.reply({"error": {"key": "unauthorized"}}, 401)
                return
            self.reply(json.loads(PIHOLE_SUMMARY.read_text()))
        elif self.path == "/control/stats":
            want = "Basic " + base64.b64encode(b"admin:agh-secret").decode()
            if self.headers.get("Authorization") != want:
                self.reply({}, 401)
                return
            self.reply(json.loads((TESTDATA / "adguard-v0.107-control-stats.json").read_text()))
        else:
            self.reply({}, 404)

    def reply(self, doc: Any, status: int = 200) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class AppServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Apps)
        self.seen: list[tuple[str, str]] = []


@pytest.fixture
def apps() -> Iterator[AppServer]:
    server = AppServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_pihole_v6_recorded_summary_behind_a_session(
    apps: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not PIHOLE_SUMMARY.exists():
        pytest.skip(f"shared fixtures absent: {PIHOLE_SUMMARY}")
    monkeypatch.setenv("PIHOLE_PASSWORD", "pi-secret")
    url = f"http://127.0.0.1:{apps.server_address[1]}"
    p = plugin(pihole=[{"url": url, "name": "pihole", "password_env": "PIHOLE_PASSWORD"}])
    found = by_key(collect(p))
    at = {"server": "pihole"}
    assert found[key("dns_pihole_queries", **at)] == 249
    assert found[key("dns_pihole_blocked", **at)] == 1
    assert found[key("dns_pihole_blocked_percent", **at)] == 1.1
    assert found[key("dns_pihole_cached", **at)] == 204
    assert found[key("dns_pihole_blocklist_domains", **at)] == 131270
    assert found[key("dns_pihole_gravity_updated_timestamp", **at)] == 1741494842
    # The session id went in a header and the session was closed; nothing in a query string.
    assert apps.seen == [
        ("POST", "/api/auth"),
        ("GET", "/api/stats/summary"),
        ("DELETE", "/api/auth"),
    ]


async def test_pihole_wrong_password_is_an_error(
    apps: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIHOLE_PASSWORD", "wrong")
    url = f"http://127.0.0.1:{apps.server_address[1]}"
    result = await run(plugin(pihole=[{"url": url, "password_env": "PIHOLE_PASSWORD"}]))
    assert result.report.status == "error"
    assert "answered 401" in result.report.message
    assert "wrong" not in result.report.message


def test_adguard_stats_with_basic_auth_from_a_file(apps: AppServer, tmp_path: Path) -> None:
    secret = tmp_path / "agh"
    secret.write_text("agh-secret\n")
    url = f"http://127.0.0.1:{apps.server_address[1]}"
    p = plugin(
        adguard=[{"url": url, "name": "agh", "username": "admin", "password_file": str(secret)}]
    )
    found = by_key(collect(p))
    assert found[key("dns_adguard_queries", server="agh")] == 4621
    assert found[key("dns_adguard_blocked", server="agh")] == 612
    assert found[key("dns_adguard_safebrowsing_blocked", server="agh")] == 2
    assert found[key("dns_adguard_processing_seconds", server="agh")] == 0.004312


def test_unbound_stats_noreset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_tool.install(
        monkeypatch,
        tmp_path / "bin",
        "unbound-control",
        TESTDATA / "unbound-1.19-stats_noreset.txt",
    )
    p = plugin(unbound=[{}])
    sink = collect(p)
    found = by_key(sink)
    at = {"server": "unbound"}
    assert found[key("dns_unbound_queries_total", **at)] == 12039
    assert found[key("dns_unbound_cache_hits_total", **at)] == 10244
    assert found[key("dns_unbound_cache_misses_total", **at)] == 1795
    assert found[key("dns_unbound_recursion_seconds", **at)] == 0.051482
    assert found[key("dns_unbound_requestlist", **at)] == 1
    assert found[key("dns_unbound_answers_total", rcode="NXDOMAIN", **at)] == 318
    assert fake_tool.calls(calls) == [["stats_noreset"]]


def test_unavailable() -> None:
    assert DnsPlugin().unavailable() == "no queries or servers configured"
    assert plugin(queries=[{"name": "x"}]).unavailable() is None
