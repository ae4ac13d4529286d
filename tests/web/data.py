"""A test host's last hour, as its collector would have published it every 10 seconds."""

from __future__ import annotations

import math

from unity.schemas import MetricBatch, Sample

HOST = "web-test"
STEP_S = 10
GIB = 1024**3
MODES = {"user": 0.20, "system": 0.10, "iowait": 0.02, "idle": 0.68}  # share of 4 cores
# Counters count from this moment at steady rates, so any two samples, stored or live, give
# the same rate.
ORIGIN = 1_700_000_000.0
RX, TX = 125_000.0, 25_000.0  # bytes/s


def memory_used(t: float) -> float:
    """The stored memory_used_bytes at time t: a slow wave around 6 GiB."""
    return 6 * GIB + GIB * math.sin(t / 600)


def at(t: float, i: int, host: str = HOST) -> list[MetricBatch]:
    """The batches of every plugin for the collection at time t (``i`` numbers it)."""
    elapsed = t - ORIGIN
    used = memory_used(t)
    return [
        MetricBatch(
            host=host,
            plugin="cpu",
            ts=t,
            seq=i,
            samples=[
                *(
                    Sample(
                        "cpu_time_seconds", 4 * share * elapsed, {"mode": m}, "seconds", "counter"
                    )
                    for m, share in MODES.items()
                ),
                Sample("cpu_load1", 1.25 + 0.25 * math.sin(t / 300)),
            ],
        ),
        MetricBatch(
            host=host,
            plugin="memory",
            ts=t,
            seq=i,
            samples=[
                Sample("memory_used_bytes", used, unit="bytes"),
                Sample("memory_cached_bytes", 2 * GIB, unit="bytes"),
                Sample("memory_total_bytes", 16 * GIB, unit="bytes"),
                Sample("memory_used_percent", 100 * used / (16 * GIB), unit="percent"),
            ],
        ),
        MetricBatch(
            host=host,
            plugin="disk",
            ts=t,
            seq=i,
            samples=[
                Sample("disk_used_bytes", 400 * GIB, {"mount": "/"}, "bytes"),
                Sample("disk_total_bytes", 1000 * GIB, {"mount": "/"}, "bytes"),
                Sample("disk_used_percent", 40.0, {"mount": "/"}, "percent"),
            ],
        ),
        MetricBatch(
            host=host,
            plugin="net",
            ts=t,
            seq=i,
            samples=[
                Sample(
                    "net_received_bytes",
                    RX * elapsed,
                    {"interface": "eth0"},
                    "bytes",
                    "counter",
                ),
                Sample("net_sent_bytes", TX * elapsed, {"interface": "eth0"}, "bytes", "counter"),
            ],
        ),
        MetricBatch(
            host=host,
            plugin="sensors",
            ts=t,
            seq=i,
            samples=[
                Sample(
                    "sensors_temperature_celsius",
                    52.5,
                    {"chip": "coretemp", "sensor": "Package id 0"},
                    "celsius",
                )
            ],
        ),
    ]


def hour(end: float, host: str = HOST, span_s: int = 3600) -> list[MetricBatch]:
    """Every collection from end - span_s to end."""
    n = span_s // STEP_S
    return [b for i in range(n + 1) for b in at(end - (n - i) * STEP_S, i, host)]
