"""Alerts under load: publish-to-notification latency at a local webhook, and the evaluator's
CPU against ingest's in the same run.

    .venv/bin/python -m tests.bench.bench_alerts [--rate 20000] [--rules 1000] [--seconds 30]

Starts its own nats-server, PostgreSQL and Valkey (as the tests do), then runs `unity ingest`
and `unity alerts` as processes on one isolated root. A producer in this process publishes
``--rate`` samples/s (100 per message, 10 hosts x 100 metric names) while ``--rules`` threshold
rules over those series are loaded (``avg(bench_m<i>{host="h<k>"}[1m]) > 1e12``: evaluated on
every sample, never firing). A probe rule (``probe_value > 0.5``, ``for`` 0) flips once a
second: each flip is one notification at a local JSON webhook (Apprise ``json://``), and its
latency is webhook receipt minus publish time. The evaluator runs with its default group wait
(``alerts_group_wait_s``), printed with the figures, since it is part of the latency.

CPU seconds of the ingest and the evaluator processes over the measured window come from
/proc (psutil): same run, same load, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import psutil
from nats.aio.msg import Msg

from tests.bench.bench_ingest import pct, spawn_ingest
from tests.integration.alerts_support import Receiver
from tests.integration.ingest_support import Unity, child_env
from tests.servers import TestServers, drop_database, drop_root, fresh_database, isolated_settings
from tests.servers import start_servers as session_servers
from unity.ingest.alerts.store import store_rules
from unity.ingest.streams import ensure_consumers, ensure_streams
from unity.schemas import MetricBatch, Sample, encode
from unity.schemas.alerts import Rule
from unity.sdk.connection import connect_nats
from unity.sdk.settings import Endpoints, Settings

PER_MESSAGE = 100
HOSTS = 10


def rules(count: int) -> list[Rule]:
    made = [
        Rule(
            name=f"bench_{i}",
            expr=f'avg(bench_m{i % PER_MESSAGE}{{host="h{i // PER_MESSAGE % HOSTS}"}}[1m])',
            threshold=1e12,
        )
        for i in range(count)
    ]
    probe = Rule(name="probe", expr="probe_value", threshold=0.5, message="probe {value}")
    return [*made, probe]


async def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def run(servers: TestServers, args: argparse.Namespace, data: Path) -> None:
    name = f"bench{uuid.uuid4().hex[:10]}"
    ep = await fresh_database(servers, name)
    settings = isolated_settings(ep, name)
    hook = Receiver()
    await hook.start()
    try:
        await measure(ep, settings, hook, args, data)
    finally:
        await hook.stop()
        await drop_root(ep, settings)
        await drop_database(servers, name)


async def measure(
    ep: Endpoints, settings: Settings, hook: Receiver, args: argparse.Namespace, data: Path
) -> None:
    conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
    try:
        await store_rules(conn, rules(args.rules), "api", replace=True)
        await conn.execute(
            "INSERT INTO alert_channels (name, url, min_severity) VALUES ('hook', $1, 'info')",
            f"json://127.0.0.1:{hook.port}/",
        )
    finally:
        await conn.close()
    nc = await connect_nats(ep, "bench")
    js = nc.jetstream()
    await ensure_streams(js, settings)
    await ensure_consumers(js, settings)
    child = child_env(
        ep,
        settings.subject_root,
        data,
        ingest_report_interval_s="0",
        alerts_report_interval_s="0",
        alerts_default_rules="false",
        log_level="WARNING",
    )
    ingest = spawn_ingest(child, data / "ingest.log")
    alerts = Unity(child, data / "alerts.log", "alerts")
    subjects = settings.subjects
    seq = 0
    flips: list[float] = []
    changes: list[float] = []

    async def on_change(msg: Msg) -> None:
        if msg.subject.endswith(".probe"):
            changes.append(time.time())

    await nc.subscribe(f"{subjects.root}.alerts.>", cb=on_change)

    async def tick(flip: bool) -> None:
        nonlocal seq
        now = time.time()
        pending = []
        for _ in range(args.rate // PER_MESSAGE // 10):
            seq += 1
            host = f"h{seq % HOSTS}"
            batch = MetricBatch(
                host=host,
                plugin="bench",
                ts=now,
                seq=seq,
                samples=[
                    Sample(f"bench_m{i}", float(seq % 97), unit="percent")
                    for i in range(PER_MESSAGE)
                ],
            )
            pending.append(js.publish(subjects.metrics(host, "bench"), encode(batch)))
        if flip:
            value = float(len(flips) % 2 == 0)
            probe = MetricBatch(
                host="probe", plugin="probe", ts=now, samples=[Sample("probe_value", value)]
            )
            flips.append(time.time())
            pending.append(js.publish(subjects.metrics("probe", "probe"), encode(probe)))
        await asyncio.gather(*pending)

    try:
        # Warm-up: consumers created, series catalogued, windows filled.
        for i in range(50):
            await tick(False)
            await asyncio.sleep(max(0.0, 0.1 - (time.time() % 0.1)))
            if i == 0:
                await asyncio.sleep(3.0)
        flips.clear()
        changes.clear()
        hook.requests.clear()
        cpu = {p: await cpu_seconds(p.pid) for p in (ingest, alerts.proc)}
        started = time.monotonic()
        ticks = int(args.seconds * 10)
        for i in range(ticks):
            await tick(i % 10 == 0)
            next_at = started + (i + 1) * 0.1
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        elapsed = time.monotonic() - started
        used = {p: await cpu_seconds(p.pid) - before for p, before in cpu.items()}
        # The last flips' notifications are still on their way.
        await asyncio.sleep(5.0)
        arrivals = [r.at for r in hook.requests]
        latency = [a - f for a, f in zip(arrivals, flips, strict=False)]
        evaluated = [c - f for c, f in zip(changes, flips, strict=False)]
        published = seq * PER_MESSAGE
        print(
            f"{args.rules} rules, {args.rate:,} samples/s asked, {elapsed:.1f} s measured,"
            f" load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        print(f"samples published in all: {published:,}", flush=True)
        if latency:
            print(
                f"publish-to-notification ({len(latency)} of {len(flips)} flips,"
                f" group wait {settings.alerts_group_wait_s} s):"
                f" p50 {statistics.median(latency) * 1000:.0f} ms,"
                f" p90 {pct(latency, 0.9) * 1000:.0f} ms,"
                f" p99 {pct(latency, 0.99) * 1000:.0f} ms, max {max(latency) * 1000:.0f} ms",
                flush=True,
            )
        if evaluated:
            print(
                f"of which publish-to-change on unity.alerts (evaluation, {len(evaluated)}):"
                f" p50 {statistics.median(evaluated) * 1000:.0f} ms,"
                f" p99 {pct(evaluated, 0.99) * 1000:.0f} ms",
                flush=True,
            )
        print(
            f"CPU over the window: ingest {used[ingest]:.1f} s"
            f" ({used[ingest] / elapsed * 100:.0f}% of a core),"
            f" evaluator {used[alerts.proc]:.1f} s ({used[alerts.proc] / elapsed * 100:.0f}%),"
            f" evaluator/ingest {used[alerts.proc] / max(used[ingest], 1e-9):.2f}",
            flush=True,
        )
    finally:
        alerts.terminate()
        ingest.terminate()
        ingest.wait(60)
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=20_000, help="samples/s")
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="unity-bench-alerts-"))
    with contextlib.contextmanager(session_servers)() as servers:
        asyncio.run(run(servers, args, data))
    print(f"logs in {data}", flush=True)


if __name__ == "__main__":
    main()
