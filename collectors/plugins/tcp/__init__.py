"""TCP and UDP reachability: connect latency, and an optional payload with an expected answer."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import msgspec

from unity.sdk import Health, Metric, Plugin, Sink


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    name: str = ""
    # Bytes to send once connected, as text or as hex (binary protocols); UDP needs one of them.
    send: str = ""
    send_hex: str = ""
    # A substring the answer must contain (TCP: read after connecting, e.g. an SSH banner).
    expect: str = ""
    connect_timeout: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is not 1-65535")
        if self.send and self.send_hex:
            raise ValueError("set send or send_hex, not both")
        if self.send_hex:
            try:
                bytes.fromhex(self.send_hex)
            except ValueError:
                raise ValueError("send_hex is not hexadecimal") from None
        if self.protocol == "udp" and not self.payload:
            raise ValueError("a udp target needs send or send_hex (UDP has no connect to time)")
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be above 0")

    @property
    def payload(self) -> bytes:
        return bytes.fromhex(self.send_hex) if self.send_hex else self.send.encode()

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}"


class TcpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    targets: list[Target] = []
    concurrency: int = 16

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


@dataclass
class Result:
    up: bool = False
    error: str = ""
    connect: float | None = None
    answer: float | None = None


class TcpPlugin(Plugin):
    id = "tcp"
    name = "TCP and UDP ports"
    description = "Per TCP/UDP target: reachable, connect latency, answer time and match."
    category = "network"
    Config = TcpConfig
    metrics = (
        Metric("tcp_up", "", "gauge", "1 when connected (and the answer matched), else 0"),
        Metric("tcp_connect_seconds", "seconds", "gauge", "TCP handshake time"),
        Metric("tcp_response_seconds", "seconds", "gauge", "connected to the expected answer"),
        Metric("udp_up", "", "gauge", "1 when the expected answer came back, else 0"),
        Metric("udp_response_seconds", "seconds", "gauge", "payload sent to answer received"),
    )

    config: TcpConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._down: list[str] = []

    def unavailable(self) -> str | None:
        return None if self.config.targets else "no targets configured"

    def collect(self, sink: Sink) -> None:
        workers = min(self.config.concurrency, max(1, len(self.config.targets)))
        with ThreadPoolExecutor(workers, thread_name_prefix="tcp-check") as pool:
            results = list(pool.map(check, self.config.targets))
        self._down = []
        for target, result in zip(self.config.targets, results, strict=True):
            labels = {"target": target.label}
            proto = target.protocol
            sink.add(f"{proto}_up", 1.0 if result.up else 0.0, labels)
            if result.connect is not None:
                sink.add("tcp_connect_seconds", result.connect, labels)
            if result.answer is not None:
                sink.add(f"{proto}_response_seconds", result.answer, labels)
            if not result.up:
                self._down.append(f"{proto} {target.label}: {result.error}")

    def health(self) -> Health | None:
        if not self._down:
            return None
        total = len(self.config.targets)
        return Health("degraded", f"{len(self._down)} of {total} down: " + "; ".join(self._down))


def check(target: Target) -> Result:
    result = Result()
    try:
        if target.protocol == "udp":
            udp(target, result)
        else:
            tcp(target, result)
    except OSError as exc:
        result.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return result


def tcp(target: Target, result: Result) -> None:
    started = time.perf_counter()
    with socket.create_connection(
        (target.host, target.port), timeout=target.connect_timeout
    ) as sock:
        connected = time.perf_counter()
        result.connect = connected - started
        if target.payload:
            sock.sendall(target.payload)
        if target.expect:
            result.answer = read_until(sock, target.expect.encode()) - connected
    result.up = True


def udp(target: Target, result: Result) -> None:
    family, kind, proto, _, address = socket.getaddrinfo(
        target.host, target.port, type=socket.SOCK_DGRAM
    )[0]
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(target.connect_timeout)
        # connect() makes the kernel report ICMP port-unreachable as ConnectionRefusedError.
        sock.connect(address)
        started = time.perf_counter()
        sock.sendall(target.payload)
        data = sock.recv(65535)
        result.answer = time.perf_counter() - started
    if target.expect and target.expect.encode() not in data:
        raise OSError(f"answer does not contain {target.expect!r}: {data[:60]!r}")
    result.up = True


def read_until(sock: socket.socket, wanted: bytes, limit: int = 65536) -> float:
    """Read until ``wanted`` appears; the time it did (the socket's timeout bounds each read)."""
    seen = b""
    while wanted not in seen:
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError(f"closed before sending {wanted.decode(errors='replace')!r}")
        seen = (seen + chunk)[-limit:]
    return time.perf_counter()
