"""ICMP echo: loss and round-trip min/avg/max/mdev over a burst, per host."""

from __future__ import annotations

import importlib.util
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from unity.collectors.command import CommandError, missing, run
from unity.sdk import Health, Metric, Plugin, Sink

SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
# iputils: "rtt min/avg/max/mdev = a/b/c/d ms"; busybox: "round-trip min/avg/max = a/b/c ms".
RTT = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/mdev|/stddev)? = ([\d./]+) ms")


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.host


class PingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    targets: list[Target] = []
    count: int = 5
    # Seconds between echoes of a burst (the ping binary refuses < 0.2 s unprivileged).
    ping_interval: float = 0.2
    # Seconds to wait for the last reply.
    reply_timeout: float = 1.0
    # auto: unprivileged ICMP sockets when net.ipv4.ping_group_range allows (or raw ones as
    # root), else the ping binary.
    method: Literal["auto", "socket", "binary"] = "auto"
    command: list[str] = msgspec.field(default_factory=lambda: ["ping"])
    concurrency: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.count <= 100:
            raise ValueError("count must be 1-100")
        if self.ping_interval <= 0 or self.reply_timeout <= 0:
            raise ValueError("ping_interval and reply_timeout must be above 0")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


@dataclass
class Burst:
    sent: int
    received: int
    rtts: tuple[float, float, float, float] | None  # min, avg, max, mdev in seconds


def group_may_ping(range_file: Path = Path("/proc/sys/net/ipv4/ping_group_range")) -> bool:
    """Whether this process's groups fall in ``net.ipv4.ping_group_range``."""
    try:
        low, high = (int(x) for x in range_file.read_text().split())
    except (OSError, ValueError):
        return False
    return any(low <= gid <= high for gid in {os.getegid(), *os.getgroups()})


def mdev(rtts: list[float]) -> float:
    """ping's mdev: the population standard deviation of the round trips."""
    mean = sum(rtts) / len(rtts)
    return math.sqrt(max(0.0, sum(r * r for r in rtts) / len(rtts) - mean * mean))


def parse_ping(text: str) -> Burst:
    """The summary of ``ping -q`` (iputils or busybox)."""
    counts = SUMMARY.search(text)
    if counts is None:
        raise ValueError(f"no ping summary in: {text.strip()[-120:]!r}")
    rtt = RTT.search(text)
    rtts = None
    if rtt is not None:
        values = [float(v) / 1000.0 for v in rtt.group(1).split("/")]
        rtts = (values[0], values[1], values[2], values[3] if len(values) > 3 else 0.0)
    return Burst(int(counts.group(1)), int(counts.group(2)), rtts)


class PingPlugin(Plugin):
    id = "ping"
    name = "Ping"
    description = "Per host: ICMP echo loss and round-trip min/avg/max/mdev over a burst."
    category = "network"
    Config = PingConfig
    metrics = (
        Metric("ping_up", "", "gauge", "1 when at least one echo came back"),
        Metric("ping_loss_percent", "percent", "gauge", "echoes lost in the burst"),
        Metric("ping_rtt_min_seconds", "seconds", "gauge", "fastest round trip"),
        Metric("ping_rtt_avg_seconds", "seconds", "gauge", "mean round trip"),
        Metric("ping_rtt_max_seconds", "seconds", "gauge", "slowest round trip"),
        Metric("ping_rtt_mdev_seconds", "seconds", "gauge", "round-trip standard deviation"),
    )

    config: PingConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def mode(self) -> tuple[str, bool]:
        """("socket", privileged) or ("binary", False), as configured and allowed here."""
        if self.config.method == "binary":
            return "binary", False
        unprivileged = group_may_ping()
        if self.config.method == "socket" or unprivileged or os.geteuid() == 0:
            return "socket", not unprivileged
        return "binary", False

    def unavailable(self) -> str | None:
        if not self.config.targets:
            return "no targets configured"
        kind, _ = self.mode()
        if kind == "socket" and importlib.util.find_spec("icmplib") is None:
            if self.config.method == "socket":
                return "needs the 'ping' extra: pip install 'unity-telemetry[ping]'"
            kind = "binary"  # burst() falls back to the binary too
        return missing(self.config.command) if kind == "binary" else None

    def collect(self, sink: Sink) -> None:
        workers = min(self.config.concurrency, len(self.config.targets) or 1)
        with ThreadPoolExecutor(workers, thread_name_prefix="ping") as pool:
            results = list(pool.map(self.burst, self.config.targets))
        self._errors = []
        for target, result in zip(self.config.targets, results, strict=True):
            labels = {"target": target.label}
            if isinstance(result, str):
                self._errors.append(f"{target.label}: {result}")
                continue
            loss = 100.0 * (result.sent - result.received) / result.sent if result.sent else 100.0
            sink.add("ping_up", 1.0 if result.received else 0.0, labels)
            sink.add("ping_loss_percent", loss, labels)
            if result.rtts is not None and result.received:
                for metric, value in zip(("min", "avg", "max", "mdev"), result.rtts, strict=True):
                    sink.add(f"ping_rtt_{metric}_seconds", value, labels)
            if not result.received:
                self._errors.append(f"{target.label}: no reply to {result.sent} echo(es)")
        if self._errors and not sink.samples:
            raise RuntimeError("; ".join(self._errors))

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None

    def burst(self, target: Target) -> Burst | str:
        """One burst, or why it could not be sent (an unknown name, no permission)."""
        kind, privileged = self.mode()
        c = self.config
        if kind == "socket" and importlib.util.find_spec("icmplib") is not None:
            import icmplib  # type: ignore[import-untyped]

            try:
                host = icmplib.ping(
                    target.host,
                    count=c.count,
                    interval=c.ping_interval,
                    timeout=c.reply_timeout,
                    privileged=privileged,
                )
            except icmplib.ICMPLibError as exc:
                return f"{type(exc).__name__}: {exc}"
            rtts = [r / 1000.0 for r in host.rtts]
            summary = (min(rtts), sum(rtts) / len(rtts), max(rtts), mdev(rtts)) if rtts else None
            return Burst(host.packets_sent, host.packets_received, summary)
        args = ["-n", "-q", "-c", str(c.count), "-i", f"{c.ping_interval:g}"]
        args += ["-W", f"{max(1, math.ceil(c.reply_timeout)):d}", "--", target.host]
        deadline = c.count * c.ping_interval + c.reply_timeout + 5
        try:
            # ping exits 1 when no reply came back: still a summary to read.
            out = run(c.command, args, timeout=deadline, ok_codes=(0, 1))
            return parse_ping(out.stdout)
        except (CommandError, ValueError) as exc:
            return str(exc)
