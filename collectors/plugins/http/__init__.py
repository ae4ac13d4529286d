"""HTTP(S) endpoint checks: up, status, latency by phase, content match, redirects, TLS expiry."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec

from unity.collectors.command import read_secret
from unity.sdk import Health, Metric, Plugin, Sink

REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Endpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str
    # The series label; the default is the URL without its query (which may hold a token).
    name: str = ""
    method: str = "GET"
    # Statuses counted as up; empty means any 2xx or 3xx.
    expect_status: list[int] = []
    # A regular expression the body must match (searched in the first max_body_bytes).
    body_regex: str = ""
    follow_redirects: bool = True
    max_redirects: int = 5
    request_timeout: float = 5.0
    verify_tls: bool = True
    ca_file: str = ""
    headers: dict[str, str] = {}
    # The Authorization header's value, from the environment or a file (never the config).
    authorization_env: str = ""
    authorization_file: str = ""

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port]/path, got {label_of(self.url)!r}")
        if self.body_regex:
            try:
                re.compile(self.body_regex)
            except re.error as exc:
                raise ValueError(f"body_regex is not a regular expression: {exc}") from None
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be above 0")

    @property
    def label(self) -> str:
        return self.name or label_of(self.url)


class HttpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    endpoints: list[Endpoint] = []
    # Checks in flight at once: a thousand endpoints never open a thousand connections.
    concurrency: int = 16
    max_body_bytes: int = 1048576

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


def label_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path or '/'}"


@dataclass
class Result:
    up: bool = False
    error: str = ""
    status: int = 0
    redirects: int = 0
    dns: float = 0.0
    connect: float = 0.0
    tls: float = 0.0
    first_byte: float = 0.0
    total: float = 0.0
    size: int = 0
    matched: bool | None = None
    tls_expires: float | None = None


def not_after(sock: ssl.SSLSocket) -> float | None:
    """The server certificate's expiry as an epoch, verified or not."""
    info = sock.getpeercert()
    if info and "notAfter" in info:
        return float(ssl.cert_time_to_seconds(str(info["notAfter"])))
    der = sock.getpeercert(binary_form=True)
    if der is None:
        return None
    try:
        from cryptography import x509
    except ImportError:  # unverified TLS without the certificate extra: expiry unknown
        return None
    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


class HttpPlugin(Plugin):
    id = "http"
    name = "HTTP endpoints"
    description = (
        "Per HTTP(S) endpoint: up, status, latency by phase, content match, TLS days left."
    )
    category = "network"
    Config = HttpConfig
    metrics = (
        Metric("http_up", "", "gauge", "1 when the answer was expected (status, content), else 0"),
        Metric("http_status_code", "", "gauge", "status of the last answer (after redirects)"),
        Metric("http_response_seconds", "seconds", "gauge", "whole check, redirects included"),
        Metric("http_dns_seconds", "seconds", "gauge", "name resolution (last hop)"),
        Metric("http_connect_seconds", "seconds", "gauge", "TCP connect (last hop)"),
        Metric("http_tls_seconds", "seconds", "gauge", "TLS handshake (last hop)"),
        Metric("http_first_byte_seconds", "seconds", "gauge", "request sent to headers read"),
        Metric("http_response_bytes", "bytes", "gauge", "body size read (up to max_body_bytes)"),
        Metric("http_redirects", "", "gauge", "redirects followed"),
        Metric("http_content_match", "", "gauge", "1 when body_regex matched, else 0"),
        Metric("http_tls_days_left", "days", "gauge", "days until the certificate expires"),
    )

    config: HttpConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._down: list[str] = []

    def unavailable(self) -> str | None:
        return None if self.config.endpoints else "no endpoints configured"

    def collect(self, sink: Sink) -> None:
        workers = min(self.config.concurrency, max(1, len(self.config.endpoints)))
        with ThreadPoolExecutor(workers, thread_name_prefix="http-check") as pool:
            results = list(pool.map(self.check, self.config.endpoints))
        self._down = []
        for endpoint, result in zip(self.config.endpoints, results, strict=True):
            labels = {"endpoint": endpoint.label}
            sink.add("http_up", 1.0 if result.up else 0.0, labels)
            if not result.up:
                self._down.append(f"{endpoint.label}: {result.error}")
            if result.status == 0:
                continue
            sink.add("http_status_code", result.status, labels)
            sink.add("http_response_seconds", result.total, labels)
            sink.add("http_dns_seconds", result.dns, labels)
            sink.add("http_connect_seconds", result.connect, labels)
            if endpoint.url.startswith("https") or result.tls:
                sink.add("http_tls_seconds", result.tls, labels)
            sink.add("http_first_byte_seconds", result.first_byte, labels)
            sink.add("http_response_bytes", result.size, labels)
            sink.add("http_redirects", result.redirects, labels)
            if result.matched is not None:
                sink.add("http_content_match", 1.0 if result.matched else 0.0, labels)
            if result.tls_expires is not None:
                days = (result.tls_expires - time.time()) / 86400.0
                sink.add("http_tls_days_left", round(days, 3), labels)

    def health(self) -> Health | None:
        if not self._down:
            return None
        total = len(self.config.endpoints)
        return Health("degraded", f"{len(self._down)} of {total} down: " + "; ".join(self._down))

    def check(self, endpoint: Endpoint) -> Result:
        result = Result()
        started = time.perf_counter()
        url = endpoint.url
        try:
            headers = dict(endpoint.headers)
            secret = read_secret(endpoint.authorization_env, endpoint.authorization_file)
            if secret:
                headers["Authorization"] = secret
            while True:
                body, location = self.hop(endpoint, url, headers, result)
                if not (endpoint.follow_redirects and result.status in REDIRECTS and location):
                    break
                if result.redirects >= endpoint.max_redirects:
                    raise OSError(f"more than {endpoint.max_redirects} redirects")
                result.redirects += 1
                url = urllib.parse.urljoin(url, location)
                if not url.startswith(("http://", "https://")):
                    raise OSError(f"redirect to a non-HTTP location {label_of(url)}")
        except (OSError, http.client.HTTPException, ValueError, RuntimeError) as exc:
            result.total = time.perf_counter() - started
            result.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return result
        result.total = time.perf_counter() - started
        result.size = len(body)
        wanted = (
            result.status in endpoint.expect_status
            if endpoint.expect_status
            else 200 <= result.status < 400
        )
        if endpoint.body_regex:
            text = body.decode(errors="replace")
            result.matched = re.search(endpoint.body_regex, text) is not None
        result.up = wanted and result.matched is not False
        if not wanted:
            result.error = f"status {result.status}"
        elif result.matched is False:
            result.error = "body does not match body_regex"
        return result

    def hop(
        self, endpoint: Endpoint, url: str, headers: dict[str, str], result: Result
    ) -> tuple[bytes, str]:
        """One request on a fresh connection, each phase timed; returns body and Location."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        deadline = endpoint.request_timeout
        t0 = time.perf_counter()
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        t1 = time.perf_counter()
        sock = connect(addresses, deadline)
        t2 = time.perf_counter()
        result.tls_expires = None
        try:
            if https:
                context = ssl.create_default_context(cafile=endpoint.ca_file or None)
                if not endpoint.verify_tls:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname=host)
                result.tls_expires = not_after(sock)
            t3 = time.perf_counter()
            conn = http.client.HTTPConnection(host, port, timeout=deadline)
            conn.sock = sock
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request(endpoint.method, target, headers=headers)
            answer = conn.getresponse()
            t4 = time.perf_counter()
            body = answer.read(self.config.max_body_bytes)
            location = answer.getheader("Location") or ""
            result.status = answer.status
        finally:
            sock.close()
        result.dns, result.connect = t1 - t0, t2 - t1
        result.tls, result.first_byte = (t3 - t2) if https else 0.0, t4 - t3
        return body, location


def connect(
    addresses: Sequence[tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]],
    timeout: float,
) -> socket.socket:
    """The first address that accepts, as ``socket.create_connection`` would (timed apart)."""
    error: OSError = OSError("no address")
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error
