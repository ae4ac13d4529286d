"""The web page in Debian's chromium: overview of 50 hosts, a host page of a day, live memory.

    .venv/bin/python -m tests.bench.bench_web [--hosts 50] [--rounds 5] [--live-minutes 3]
        [--screenshots docs]

Starts its own nats-server, PostgreSQL and Valkey (tests/servers.py), the API on a port and
ingest (tests/web/stack.py), and publishes through JetStream: ``hosts`` hosts with their last
hour every 10 s (the overview), and one of them ("bench-rich") with a day every 60 s of 16
panels' worth of series (cpu, load, memory, swap, 3 disks, 3 interfaces, 2 disk devices,
temperatures, processes), and runs storage maintenance once (partitions, the 1m and 1h
rollups), as `unity up` keeps doing. Then, in headless chromium over loopback:

- overview: time from navigation to the page's ready mark (the table and its sparklines
  drawn), each round a fresh load; baseline: the same four API calls fetched by the page's own
  JavaScript in the same minutes, without rendering;
- host page over 24 h: time to ready, the number of charts and of API requests it made;
  baseline: its one /query call fetched alone;
- live mode on the host page for ``live-minutes`` with a collection published every second:
  the JS heap after a forced garbage collection (DevTools protocol, Performance.getMetrics)
  every 30 s.

Prints figures; asserts nothing (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

from selenium import webdriver

from tests.servers import start_servers
from tests.web import data
from tests.web.browser import js, ready, sign_in
from tests.web.stack import Stack, chromium
from unity.ingest.maintenance import maintain
from unity.schemas import MetricBatch, Sample

RICH = "bench-rich"


def rich_at(t: float, i: int) -> list[MetricBatch]:
    """One collection of a well-equipped host: 16 panels on its page."""
    elapsed = t - data.ORIGIN
    batches = data.at(t, i, RICH)
    extra = [
        (
            "swap",
            [
                Sample("swap_used_bytes", 1e9, unit="bytes"),
                Sample("swap_total_bytes", 4e9, unit="bytes"),
            ],
        ),
        (
            "disk",
            [
                Sample(name, v, {"mount": m}, "bytes")
                for m in ("/data", "/backup")
                for name, v in (("disk_used_bytes", 3e11), ("disk_total_bytes", 1e12))
            ],
        ),
        (
            "net",
            [
                Sample(name, rate * elapsed, {"interface": iface}, "bytes", "counter")
                for iface in ("eth1", "wg0")
                for name, rate in (("net_received_bytes", 5e4), ("net_sent_bytes", 2e4))
            ],
        ),
        (
            "diskio",
            [
                Sample(name, rate * elapsed, {"device": dev}, "bytes", "counter")
                for dev in ("sda", "nvme0n1")
                for name, rate in (("diskio_read_bytes", 3e5), ("diskio_written_bytes", 1e5))
            ],
        ),
        ("processes", [Sample("processes_total", 300 + i % 7)]),
    ]
    # One batch per plugin and collection: a second one with the same seq would be a duplicate.
    samples = {b.plugin: list(b.samples) for b in batches}
    for plugin, more in extra:
        samples.setdefault(plugin, []).extend(more)
    return [MetricBatch(host=RICH, plugin=p, ts=t, seq=i, samples=s) for p, s in samples.items()]


async def maintained(stack: Stack) -> None:
    assert stack.env is not None
    async with stack.pool.acquire() as conn:
        await maintain(conn, stack.env.settings)


def ready_ms(driver: webdriver.Chrome) -> float:
    value: float = js(driver, 'return performance.getEntriesByName("unity-ready")[0].startTime')
    return value


def fetch_ms(driver: webdriver.Chrome, urls: list[str]) -> float:
    """The time the page's JavaScript takes to fetch (and parse) these URLs at once."""
    value: float = driver.execute_async_script(
        """
        const [urls, done] = arguments;
        const t0 = performance.now();
        Promise.all(urls.map((u) => fetch(u).then((r) => r.json())))
          .then(() => done(performance.now() - t0));
        """,
        urls,
    )
    return value


def heap(driver: webdriver.Chrome) -> float:
    driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    metrics: dict[str, Any] = driver.execute_cdp_cmd("Performance.getMetrics", {})
    used = next(m["value"] for m in metrics["metrics"] if m["name"] == "JSHeapUsedSize")
    return float(used) / 2**20


def summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.0f} ms, min {min(values):.0f}, max {max(values):.0f}"
        f" ({', '.join(f'{v:.0f}' for v in values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--live-minutes", type=float, default=3.0)
    parser.add_argument("--screenshots", type=Path, help="save the overview and host page here")
    args = parser.parse_args()

    with (
        contextlib.contextmanager(start_servers)() as servers,
        Stack(servers) as stack,
        chromium() as driver,
    ):
        now = time.time()
        started = time.perf_counter()
        for h in range(args.hosts - 1):
            stack.call(stack.store(data.hour(now, f"bench-{h:02d}")), timeout=600)
        day = [b for i in range(1441) for b in rich_at(now - (1440 - i) * 60, i)]
        stack.call(stack.store(day), timeout=900)
        stack.call(maintained(stack), timeout=600)
        print(
            f"loaded {args.hosts} hosts (one with a day of 16 panels) through JetStream and"
            f" ingest, then maintained (partitions, 1m and 1h rollups, as `unity up` does),"
            f" in {time.perf_counter() - started:.0f} s"
        )
        sign_in(driver, stack, "read")

        overview, base = [], []
        api = "/api/v1"
        calls = [
            f"{api}/hosts?limit=1000",
            f'{api}/latest?limit=1000&selector={{__name__=~"memory_used_percent|disk_used_percent|cpu_load1|system_load1|sensors_temperature_celsius|system_uptime_seconds"}}',
            f'{api}/query?selector={{__name__=~"cpu_time_seconds|net_received_bytes|net_sent_bytes"}}&start=-1h&step=60&rate=true',
            f"{api}/alerts?limit=1000",
        ]
        for _ in range(args.rounds):
            driver.get(stack.url + "/")
            ready(driver, "overview")
            overview.append(ready_ms(driver))
            base.append(fetch_ms(driver, calls))
        each = [fetch_ms(driver, [call]) for call in calls]
        rows = js(driver, "return document.querySelectorAll('tbody tr[data-host]').length")
        if args.screenshots:
            driver.save_screenshot(str(args.screenshots / "web-overview.png"))
        print(f"overview, {rows} hosts, navigation to ready: {summary(overview)}")
        print(f"  baseline, its 4 API calls fetched alone: {summary(base)}")
        print(
            "  each alone, once (ms): "
            + ", ".join(
                f"{c.split('?')[0].rsplit('/', 1)[1]} {ms:.0f}"
                for c, ms in zip(calls, each, strict=True)
            )
        )

        page, alone, requests, charts = [], [], 0, 0
        for _ in range(args.rounds):
            driver.get(f"{stack.url}/hosts/{RICH}?range=24h")
            ready(driver, "host")
            page.append(ready_ms(driver))
            requests = js(
                driver,
                "return performance.getEntriesByType('resource')"
                ".filter((e) => e.name.includes('/api/v1/')).length",
            )
            charts = js(driver, "return window.unity.charts.length")
            query = js(
                driver,
                "return performance.getEntriesByType('resource')"
                ".find((e) => e.name.includes('/api/v1/query')).name",
            )
            alone.append(fetch_ms(driver, [query]))
        if args.screenshots:
            driver.save_screenshot(str(args.screenshots / "web-host.png"))
        print(
            f"host page over 24 h, {charts} charts, {requests} API requests"
            f" (session + one query): {summary(page)}"
        )
        print(f"  baseline, its one /query fetched alone: {summary(alone)}")

        driver.get(f"{stack.url}/hosts/{RICH}?range=1h&live=1")
        ready(driver, "host")
        driver.execute_cdp_cmd("Performance.enable", {})
        samples = [(0.0, heap(driver))]
        t0 = time.time()
        i = 2000
        while time.time() - t0 < args.live_minutes * 60:
            tick = time.time()
            stack.call(stack.store(rich_at(tick, i)))
            i += 1
            if time.time() - t0 >= len(samples) * 30:
                samples.append((time.time() - t0, heap(driver)))
            time.sleep(max(0.0, 1 - (time.time() - tick)))
        samples.append((time.time() - t0, heap(driver)))
        points = js(driver, "return window.unity.livePoints")
        print(
            f"live mode, {args.live_minutes:g} min, one collection a second, {points} chart"
            " updates; JS heap after GC (MiB): "
            + ", ".join(f"{t:.0f}s {mib:.2f}" for t, mib in samples)
        )


if __name__ == "__main__":
    main()
