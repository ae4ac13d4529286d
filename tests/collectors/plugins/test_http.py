"""http against real local HTTP and HTTPS servers (a test CA signs the HTTPS one)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.testca import TestCA
from unity.collectors.plugins.http import HttpPlugin
from unity.sdk import ConfigError
from unity.sdk.testing import run


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.active += 1
            self.server.peak = max(self.server.peak, self.server.active)
            self.server.paths.append(self.path)
            self.server.auth.append(self.headers.get("Authorization", ""))
        try:
            self.answer()
        finally:
            with self.server.lock:
                self.server.active -= 1

    def answer(self) -> None:
        path = self.path.split("?")[0]
        if path == "/ok":
            self.reply(200, b"<html><title>unity ok</title></html>")
        elif path == "/hop":
            self.reply(302, b"", {"Location": "/ok"})
        elif path == "/loop":
            self.reply(302, b"", {"Location": "/loop"})
        elif path == "/slow":
            time.sleep(1.0)
            self.reply(200, b"late")
        elif path == "/busy":
            time.sleep(0.05)
            self.reply(200, b"busy")
        else:
            self.reply(404, b"not found")

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.paths: list[str] = []
        self.auth: list[str] = []

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


def serve(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def web() -> Iterator[Server]:
    yield from serve(Server())


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def tls_server(ca: TestCA, name: str, **leaf: object) -> Server:
    server = Server()
    cert = ca.leaf(name, **leaf)  # type: ignore[arg-type]
    server.socket = cert.server_context().wrap_socket(server.socket, server_side=True)
    return server


def plugin(*endpoints: Mapping[str, object], **top: object) -> HttpPlugin:
    return HttpPlugin(HttpPlugin.parse_config({"endpoints": list(endpoints), **top}))


def test_up_status_latency_split_and_content_match(web: Server) -> None:
    url = f"http://{web.base}/ok"
    sink = collect(plugin({"url": url, "body_regex": "<title>unity ok</title>"}))
    found = by_key(sink)
    labels = {"endpoint": url}
    assert found[key("http_up", **labels)] == 1.0
    assert found[key("http_status_code", **labels)] == 200.0
    assert found[key("http_content_match", **labels)] == 1.0
    assert found[key("http_response_bytes", **labels)] == 36.0
    phases = [found[key(f"http_{p}_seconds", **labels)] for p in ("dns", "connect", "first_byte")]
    assert all(p >= 0 for p in phases)
    assert sum(phases) <= found[key("http_response_seconds", **labels)]
    assert key("http_tls_seconds", **labels) not in found  # plain HTTP has no handshake


def test_content_mismatch_and_unexpected_status_are_down_with_a_reason(web: Server) -> None:
    mismatch = {"url": f"http://{web.base}/ok", "body_regex": "maintenance", "name": "mm"}
    missing = {"url": f"http://{web.base}/gone", "name": "gone"}
    wanted_404 = {"url": f"http://{web.base}/gone", "name": "want404", "expect_status": [404]}
    p = plugin(mismatch, missing, wanted_404)
    found = by_key(collect(p))
    assert found[key("http_up", endpoint="mm")] == 0.0
    assert found[key("http_content_match", endpoint="mm")] == 0.0
    assert found[key("http_up", endpoint="gone")] == 0.0
    assert found[key("http_status_code", endpoint="gone")] == 404.0
    assert found[key("http_up", endpoint="want404")] == 1.0
    health = p.health()
    assert health is not None and health.status == "degraded"
    assert "2 of 3 down" in health.message
    assert "mm: body does not match" in health.message and "gone: status 404" in health.message


def test_redirects_are_followed_and_counted_and_a_loop_stops(web: Server) -> None:
    hop = {"url": f"http://{web.base}/hop", "name": "hop"}
    loop = {"url": f"http://{web.base}/loop", "name": "loop", "max_redirects": 3}
    unfollowed = {"url": f"http://{web.base}/hop", "name": "raw", "follow_redirects": False}
    p = plugin(hop, loop, unfollowed)
    found = by_key(collect(p))
    assert found[key("http_redirects", endpoint="hop")] == 1.0
    assert found[key("http_status_code", endpoint="hop")] == 200.0
    assert found[key("http_up", endpoint="loop")] == 0.0
    assert found[key("http_status_code", endpoint="raw")] == 302.0
    assert found[key("http_redirects", endpoint="raw")] == 0.0
    health = p.health()
    assert health is not None and "more than 3 redirects" in health.message
    assert web.paths.count("/loop") == 4


def test_https_with_the_test_ca_reports_tls_phase_and_days_left(ca: TestCA) -> None:
    for server in serve(tls_server(ca, "good", days=30)):
        url = f"https://localhost:{server.server_address[1]}/ok"
        found = by_key(collect(plugin({"url": url, "ca_file": str(ca.pem)})))
        assert found[key("http_up", endpoint=url)] == 1.0
        assert found[key("http_tls_seconds", endpoint=url)] > 0
        assert 29.9 < found[key("http_tls_days_left", endpoint=url)] <= 30.0


def test_untrusted_https_is_down_unless_verification_is_off(ca: TestCA) -> None:
    for server in serve(tls_server(ca, "self", days=10, self_signed=True)):
        url = f"https://localhost:{server.server_address[1]}/ok"
        strict = plugin(
            {"url": url, "name": "strict"}, {"url": url, "name": "lax", "verify_tls": False}
        )
        found = by_key(collect(strict))
        assert found[key("http_up", endpoint="strict")] == 0.0
        assert key("http_status_code", endpoint="strict") not in found
        assert found[key("http_up", endpoint="lax")] == 1.0
        # Not verified, the certificate is still read for its expiry.
        assert 9.9 < found[key("http_tls_days_left", endpoint="lax")] <= 10.0
        health = strict.health()
        assert health is not None and "SSLCertVerificationError" in health.message


def test_per_endpoint_timeout(web: Server) -> None:
    slow = {"url": f"http://{web.base}/slow", "name": "slow", "request_timeout": 0.2}
    fast = {"url": f"http://{web.base}/ok", "name": "fast"}
    p = plugin(slow, fast)
    found = by_key(collect(p))
    assert found[key("http_up", endpoint="slow")] == 0.0
    assert found[key("http_up", endpoint="fast")] == 1.0
    health = p.health()
    assert health is not None and "slow: TimeoutError" in health.message


def test_many_endpoints_share_a_bounded_pool(web: Server) -> None:
    endpoints = [{"url": f"http://{web.base}/busy?n={i}", "name": f"e{i}"} for i in range(60)]
    sink = collect(plugin(*endpoints, concurrency=4))
    assert len(sink.samples) > 0
    assert sum(s.value for s in sink.samples if s.name == "http_up") == 60
    assert 1 <= web.peak <= 4


def test_query_strings_stay_out_of_labels_and_the_token_comes_from_the_environment(
    web: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_AUTH", "Bearer s3cret")
    url = f"http://{web.base}/ok?api_key=s3cret"
    sink = collect(plugin({"url": url, "authorization_env": "APP_AUTH"}))
    assert {s.labels["endpoint"] for s in sink.samples} == {f"http://{web.base}/ok"}
    assert web.auth == ["Bearer s3cret"]


async def test_an_unreachable_endpoint_is_down_and_the_run_says_so(web: Server) -> None:
    web.shutdown()
    web.server_close()
    url = f"http://{web.base}/ok"
    p = plugin({"url": url})
    result = await run(p)
    assert result.report.status == "degraded"
    assert "ConnectionRefusedError" in result.report.message
    assert result.batch is not None
    assert [(s.name, s.value) for s in result.batch.samples] == [("http_up", 0.0)]


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="timeoutt"):
        HttpPlugin.parse_config({"endpoints": [{"url": "http://x/", "timeoutt": 1}]})
    with pytest.raises(ConfigError, match="http"):
        HttpPlugin.parse_config({"endpoints": [{"url": "ftp://x/"}]})
    with pytest.raises(ConfigError, match="body_regex"):
        HttpPlugin.parse_config({"endpoints": [{"url": "http://x/", "body_regex": "("}]})


def test_unavailable_without_endpoints() -> None:
    assert HttpPlugin().unavailable() == "no endpoints configured"
    assert plugin({"url": "http://127.0.0.1/"}).unavailable() is None
