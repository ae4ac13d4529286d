"""Generated series written into Unity and a real Prometheus alike, and a real Prometheus."""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cramjam
import httpx

from unity.api.remote_write import WriteRequest
from unity.compose.embedded import free_port

Labels = tuple[tuple[str, str], ...]
Points = list[tuple[int, float]]
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
BUCKETS = ("0.1", "0.5", "1", "+Inf")


def _labels(**kw: str) -> Labels:
    return tuple(sorted(kw.items()))


@dataclass
class _Host:
    """One host's sampling: its number, its gap and late start, the shared random source."""

    index: int
    name: str
    start: int
    end: int
    rng: random.Random

    def aligned(self) -> list[int]:
        """Every 15 s on minute edges, from the first minute edge after the start."""
        first = -(-self.start // 60_000) * 60_000
        return list(range(first, self.end, 15_000))

    def times(self) -> list[int]:
        # Every series has its own phase: scrapes of different targets are not aligned.
        late = 30 * 60_000 if self.name == "delta" else 0
        ts = list(range(self.start + self.rng.randrange(15_000) + late, self.end, 15_000))
        if self.name == "gamma":
            lo, hi = self.start + 50 * 60_000, self.start + 62 * 60_000
            ts = [t for t in ts if not lo <= t < hi]
        return ts


def _gauges(h: _Host, out: dict[Labels, Points]) -> None:
    load = 1.0 + h.index
    points: Points = []
    for t in h.times():
        load = max(0.0, load + h.rng.uniform(-0.3, 0.3))
        points.append((t, round(load, 3)))
    out[_labels(__name__="node_load1", host=h.name, plugin="node")] = points
    out[_labels(__name__="aligned_gauge", host=h.name, plugin="node")] = [
        (t, round(h.rng.uniform(0, 100), 2)) for t in h.aligned()
    ]
    for sensor in ("cpu", "nvme"):
        base = 40.0 + 5 * h.index + (10 if sensor == "nvme" else 0)
        out[_labels(__name__="temp_celsius", host=h.name, plugin="sensors", sensor=sensor)] = [
            (t, round(base + 8 * math.sin(t / 600_000 + h.index) + h.rng.uniform(-1, 1), 2))
            for t in h.times()
        ]


def _counters(h: _Host, out: dict[Labels, Points]) -> None:
    for device in ("eth0", "wlan0"):
        total = h.rng.uniform(0, 1e6)
        points: Points = []
        for i, t in enumerate(h.times()):
            # Resets (a reboot, a driver reload) on some series.
            if (device == "eth0" and i in (200, 330)) or (h.name == "beta" and i == 90):
                total = h.rng.uniform(0, 5000)
            total += h.rng.uniform(1e4, 5e5) * (3 if device == "eth0" else 1)
            points.append((t, round(total)))
        out[_labels(__name__="net_bytes_total", host=h.name, plugin="net", device=device)] = points
    for instance in ("web-1", "web-2"):
        for code in ("200", "500"):
            count = 0.0
            points = []
            for t in h.times():
                count += h.rng.randrange(50, 500) if code == "200" else h.rng.randrange(0, 5)
                points.append((t, count))
            key = _labels(
                __name__="http_requests_total",
                host=h.name,
                plugin="web",
                instance=instance,
                code=code,
            )
            out[key] = points


def _histogram(h: _Host, out: dict[Labels, Points]) -> None:
    cumulative = [0.0] * len(BUCKETS)
    series: dict[str, Points] = {le: [] for le in BUCKETS}
    for t in h.times():
        for _ in range(h.rng.randrange(5, 40)):
            latency = h.rng.expovariate(3.0 - 0.4 * h.index)
            for i, le in enumerate(BUCKETS):
                if le == "+Inf" or latency <= float(le):
                    cumulative[i] += 1
        for i, le in enumerate(BUCKETS):
            series[le].append((t, cumulative[i]))
    for le, points in series.items():
        out[_labels(__name__="request_seconds_bucket", host=h.name, plugin="web", le=le)] = points


def generate(end_ms: int, minutes: int = 120, seed: int = 17) -> dict[Labels, Points]:
    """Gauges, counters with resets, histogram buckets, a gap (gamma), a late start (delta),
    four hosts; samples every 15 s with a phase of their own."""
    rng = random.Random(seed)
    start = end_ms - minutes * 60_000
    out: dict[Labels, Points] = {}
    for index, name in enumerate(("alpha", "beta", "gamma", "delta")):
        host = _Host(index, name, start, end_ms, rng)
        _gauges(host, out)
        _counters(host, out)
        _histogram(host, out)
    return out


def write_requests(data: dict[Labels, Points], per_request: int = 4000) -> Iterator[bytes]:
    """Snappy-compressed WriteRequests in time order across all series (Prometheus's TSDB
    refuses a series' samples out of order)."""
    flat = sorted((t, labels, v) for labels, points in data.items() for t, v in points)
    for i in range(0, len(flat), per_request):
        request = WriteRequest()
        by_series: dict[Labels, Any] = {}
        for t, labels, v in flat[i : i + per_request]:
            ts = by_series.get(labels)
            if ts is None:
                ts = by_series[labels] = request.timeseries.add()
                for name, value in labels:
                    ts.labels.add(name=name, value=value)
            ts.samples.add(value=v, timestamp=t)
        yield bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def real_prometheus(config: str = "", files: dict[str, str] | None = None) -> Iterator[Prometheus]:
    """Debian's prometheus on a random port and a temporary directory, remote write on.

    ``config`` is appended to its configuration file; ``files`` are written beside it (mode
    0600: credentials), ``{dir}`` in the configuration standing for that folder."""
    binary = shutil.which("prometheus")
    if binary is None:
        import pytest

        pytest.skip("prometheus is not installed (Debian package prometheus)")
    data = Path(tempfile.mkdtemp(prefix="unity-prometheus-"))
    port = free_port()
    for name, text in (files or {}).items():
        (data / name).write_text(text)
        (data / name).chmod(0o600)
    body = config.replace("{dir}", str(data)).replace("{port}", str(port))
    (data / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n" + body)
    log = (data / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={data / 'prometheus.yml'}",
            f"--storage.tsdb.path={data / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
            "--storage.tsdb.retention.time=30d",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"prometheus did not start: {(data / 'prometheus.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        yield Prometheus(url, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def _number(text: str) -> float:
    return float(text.replace("+Inf", "inf").replace("-Inf", "-inf"))


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-9 + 1e-6 * max(abs(a), abs(b))


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """What differs between two successful answers, series by series and point by point."""
    if ours.get("status") != "success" or theirs.get("status") != "success":
        return [f"status: unity {ours} / prometheus {theirs}"]
    a, b = ours["data"], theirs["data"]
    if a["resultType"] != b["resultType"]:
        return [f"resultType: unity {a['resultType']} / prometheus {b['resultType']}"]
    if a["resultType"] in ("scalar", "string"):
        same = _close(_number(a["result"][1]), _number(b["result"][1]))
        return [] if same else [f"scalar: unity {a['result']} / prometheus {b['result']}"]

    def points(result: list[dict[str, Any]]) -> dict[Labels, list[tuple[float, str]]]:
        out = {}
        for item in result:
            key = tuple(sorted(item["metric"].items()))
            out[key] = [tuple(p) for p in item.get("values", [item.get("value")])]
        return out

    ua, pb = points(a["result"]), points(b["result"])
    diffs = [f"only in unity: {dict(k)}" for k in ua.keys() - pb.keys()]
    diffs += [f"only in prometheus: {dict(k)}" for k in pb.keys() - ua.keys()]
    for key in ua.keys() & pb.keys():
        mine, real = dict(ua[key]), dict(pb[key])
        for t in sorted(mine.keys() | real.keys()):
            if t not in mine or t not in real:
                diffs.append(f"{dict(key)} at {t}: unity {mine.get(t)} / prometheus {real.get(t)}")
            elif not _close(_number(mine[t]), _number(real[t])):
                diffs.append(f"{dict(key)} at {t}: unity {mine[t]} / prometheus {real[t]}")
    return diffs


def points(answer: dict[str, Any]) -> int:
    """How many values a successful answer holds."""
    data = answer.get("data") or {}
    if data.get("resultType") in ("scalar", "string"):
        return 1
    return sum(len(item.get("values", [None])) for item in data.get("result", []))
