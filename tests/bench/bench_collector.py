"""The collector against Debian's prometheus-node-exporter, side by side in one run.

    apt-get update && apt-get install -y prometheus-node-exporter  # once, by hand
    .venv/bin/python -m tests.bench.bench_collector [--seconds 60] [--warmup 5]

Starts a private nats-server, then the agents as child processes for the same period:

- ``unity collector`` with every system plugin (cpu, memory, disk, diskio, net, system,
  processes, sensors; gpu left out: no nvidia-smi here) and its self-metrics, all at 1 s,
  publishing to JetStream with acks;
- a second ``unity collector`` with about what node_exporter's default collectors cover (cpu,
  memory, disk, diskio, net, system without the per-process state walk), for a like-for-like
  figure;
- ``prometheus-node-exporter`` with its default collectors, scraped once a second by a small
  child process that fetches ``/metrics`` (the scrape's own CPU is reported separately).

CPU seconds (user + system, from /proc) are counted after a warm-up, so the Python start-up
(imports) is reported apart from the steady cost; peak RSS is the kernel's VmHWM of each
process. The nats-server's own cost is not counted on either side. The bench installs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from unity.compose.embedded import NatsServer, free_port
from unity.ingest.streams import ensure_streams
from unity.sdk.connection import connect_nats
from unity.sdk.settings import Endpoints, load_settings

EXPORTER = "prometheus-node-exporter"

CONFIG = """
[agent]
host = "{host}"
interval = "1s"
spool_dir = "{spool}"

[[plugins.cpu]]
[[plugins.memory]]
[[plugins.disk]]
[[plugins.diskio]]
[[plugins.net]]
"""
# Every system plugin with its defaults.
ALL = """
[[plugins.system]]
[[plugins.processes]]
[[plugins.sensors]]
"""
# What node_exporter's default collectors cover: no per-process walk.
LIKE_NODE = """
[[plugins.system]]
process_states = false
"""

SCRAPER = """
import sys, time, urllib.request
url = sys.argv[1]
next_at = time.time()
while True:
    next_at += 1.0
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read()
    time.sleep(max(0.0, next_at - time.time()))
"""


@dataclass
class Usage:
    cpu_start: float = 0.0
    cpu_warm: float = 0.0
    cpu_end: float = 0.0
    peak_rss: int = 0

    @property
    def steady(self) -> float:
        return self.cpu_end - self.cpu_warm


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0
    )


def wait_port(port: int, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {within:.0f}s")


async def make_streams(ep: Endpoints, root: str) -> None:
    settings = load_settings(env={}, subject_root=root)
    nc = await connect_nats(ep, "bench")
    try:
        await ensure_streams(nc.jetstream(), settings)
    finally:
        await nc.close()


async def published(ep: Endpoints, root: str) -> int:
    nc = await connect_nats(ep, "bench")
    try:
        info = await nc.jetstream().stream_info(f"{root.upper()}_METRICS")
        return int(info.state.messages)
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    exporter = shutil.which(EXPORTER)
    if exporter is None:
        raise SystemExit(f"{EXPORTER} is not installed: apt-get install -y {EXPORTER}")

    data = Path(tempfile.mkdtemp(prefix="unity-bench-collector-"))
    nats_server = NatsServer(data, free_port(), "unity", uuid.uuid4().hex)
    nats_server.start()
    root = f"b{uuid.uuid4().hex[:8]}"
    url = f"nats://127.0.0.1:{nats_server.port}"
    ep = Endpoints(url, nats_server.user, nats_server.password, "", None, "", None)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        asyncio.run(make_streams(ep, root))
        full = data / "collector.toml"
        full.write_text(CONFIG.format(host="bench", spool=data / "spool") + ALL)
        lite = data / "collector-lite.toml"
        lite.write_text(CONFIG.format(host="bench-lite", spool=data / "spool-lite") + LIKE_NODE)
        env = {
            **os.environ,
            "UNITY_NATS_URL": url,
            "UNITY_NATS_USER": nats_server.user,
            "UNITY_NATS_PASSWORD": nats_server.password,
            "UNITY_DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused",
            "UNITY_VALKEY_URL": "valkey://127.0.0.1:1/0",
            "UNITY_SUBJECT_ROOT": root,
            "UNITY_DATA_DIR": str(data / "unity"),
            "UNITY_LOG_LEVEL": "WARNING",
        }
        argv = [sys.executable, "-m", "unity.compose", "collector", "--config"]
        collector = start([*argv, str(full)], env)
        collector_lite = start([*argv, str(lite)], env)
        port = free_port()
        node = start([exporter, f"--web.listen-address=127.0.0.1:{port}"])
        procs += [collector, collector_lite, node]
        wait_port(port, 20)
        scraper = start([sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{port}/metrics"])
        procs.append(scraper)
        names = {
            "collector": collector,
            "collector-lite": collector_lite,
            "node_exporter": node,
            "scraper": scraper,
        }
        usage = {name: Usage(cpu_start=cpu_seconds(p.pid)) for name, p in names.items()}
        time.sleep(args.warmup)
        for name, p in names.items():
            usage[name].cpu_warm = cpu_seconds(p.pid)
        time.sleep(args.seconds)
        for name, p in names.items():
            if p.poll() is not None:
                raise SystemExit(f"{name} exited with {p.returncode} during the run")
            usage[name].cpu_end = cpu_seconds(p.pid)
            usage[name].peak_rss = vm_hwm(p.pid)
        batches = asyncio.run(published(ep, root))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        nats_server.stop()
        shutil.rmtree(data, ignore_errors=True)

    load1, load5, _ = os.getloadavg()
    print(f"run: {args.seconds:.0f} s after a {args.warmup:.0f} s warm-up, 1 s interval/scrape")
    print(
        f"load average at the end: {load1:.2f} (1 min), {load5:.2f} (5 min), {os.cpu_count()} cores"
    )
    print(
        f"{'process':<16}{'startup cpu s':>14}{'steady cpu s':>14}{'cpu %':>8}{'peak RSS MB':>13}"
    )
    for name, u in usage.items():
        print(
            f"{name:<16}{u.cpu_warm - u.cpu_start:>14.2f}{u.steady:>14.2f}"
            f"{100 * u.steady / args.seconds:>8.2f}{u.peak_rss / 1e6:>13.1f}"
        )
    baseline = usage["node_exporter"].steady + usage["scraper"].steady
    print(f"metric batches in JetStream (both collectors): {batches}")
    for name in ("collector", "collector-lite"):
        print(f"{name} steady CPU / (node_exporter + scrape): {usage[name].steady / baseline:.2f}")


if __name__ == "__main__":
    main()
