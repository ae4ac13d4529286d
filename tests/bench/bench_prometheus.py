"""PromQL ``query_range`` over a day at 1-minute steps: Unity against Prometheus, same data.

    .venv/bin/python -m tests.bench.bench_prometheus [--series 100] [--interval 15] [--rounds 7]

Starts its own nats-server, PostgreSQL and Valkey (tests/servers.py), an ingest worker, the API
as its own process (`python -m unity.compose api`, uvicorn) and Debian's Prometheus 2.42 with
its remote write receiver. Generates ``--series`` gauges and as many counters (with resets)
over 24 hours at ``--interval`` seconds and writes the same remote write requests into both
(Unity: through `/api/v1/write`, JetStream and ingest), and runs Unity's storage maintenance
once (the rollups). Then times each query over real HTTP on a minute-aligned range, as Grafana
sends them, alternating the two servers request by request, ``--rounds`` times each, and prints the
median and the best per server and the ratio of medians (Unity / Prometheus): the same-run
baseline. The first request of each query on each server is a warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from pathlib import Path

import httpx

from tests.bench.bench_api import ApiBuild, api_process
from tests.helpers import running_worker, wait_for
from tests.prometheus.support import HEADERS, Labels, Points, real_prometheus, write_requests
from tests.servers import fresh_database, isolated_settings, start_servers
from unity.api.tokens import create_token
from unity.compose.embedded import free_port
from unity.ingest.maintenance import maintain
from unity.sdk.connection import pg_pool
from unity.sdk.settings import Endpoints, Settings

DAY_MS = 86_400_000
QUERIES = [
    ("bench_gauge", 60),
    ("rate(bench_bytes_total[5m])", 60),
    ("sum by (host) (rate(bench_bytes_total[5m]))", 60),
    ("avg_over_time(bench_gauge[5m])", 60),
    ("max_over_time(bench_gauge[1h])", 60),
    ("bench_gauge > 50", 60),
    # Wide steps: hourly windows of the day, from the 1m rollup on Unity's side.
    ("avg_over_time(bench_gauge[1h])", 3600),
    ("max_over_time(bench_gauge[1h])", 3600),
]


def generate(end_ms: int, series: int, interval_s: int) -> dict[Labels, Points]:
    rng = random.Random(1)
    out: dict[Labels, Points] = {}
    start = end_ms - DAY_MS
    for i in range(series):
        host = f"h{i // 10:02d}"
        phase = rng.randrange(interval_s * 1000)
        times = range(start + phase, end_ms, interval_s * 1000)
        gauge = (("__name__", "bench_gauge"), ("host", host), ("plugin", "bench"), ("n", str(i)))
        out[gauge] = [(t, round(50 + 40 * rng.random(), 2)) for t in times]
        counter = (
            ("__name__", "bench_bytes_total"),
            ("host", host),
            ("n", str(i)),
            ("plugin", "bench"),
        )
        total, points = 0.0, []
        for j, t in enumerate(times):
            total = 0.0 if j % 2000 == 1999 else total + rng.randrange(1000, 100_000)
            points.append((t, total))
        out[counter] = points
    return out


async def load(api: str, token: str, prom: str, bodies: list[bytes]) -> tuple[float, float]:
    """Write every request into both; seconds each took to accept them."""
    auth = {"Authorization": f"Bearer {token}"}
    took = []
    async with httpx.AsyncClient(timeout=120) as client:
        for url, headers in (
            (f"{prom}/api/v1/write", HEADERS),
            (f"{api}/api/v1/write", HEADERS | auth),
        ):
            started = time.perf_counter()
            for body in bodies:
                answer = await client.post(url, content=body, headers=headers)
                answer.raise_for_status()
            took.append(time.perf_counter() - started)
    return took[0], took[1]


async def bench(ep: Endpoints, settings: Settings, args: argparse.Namespace, log: Path) -> None:
    end_ms = (int(time.time()) - 60) * 1000
    data = generate(end_ms, args.series, args.interval)
    total = sum(len(p) for p in data.values())
    bodies = list(write_requests(data, per_request=5000))
    print(f"{len(data)} series, {total} samples, {len(bodies)} remote write requests", flush=True)
    pool = await pg_pool(ep, min_size=1, max_size=2)
    _, write_token = await create_token(pool, "bench-write", ["write"])
    _, read_token = await create_token(pool, "bench-read", ["read"])
    port = free_port()
    proc = api_process(settings, ep, ApiBuild(Path.cwd(), 1), port, log)
    api = f"http://127.0.0.1:{port}"
    try:
        async with running_worker(settings, ep), httpx.AsyncClient(timeout=300) as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{api}/api/v1/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            with real_prometheus() as prom:
                took_prom, took_unity = await load(api, write_token, prom.url, bodies)
                print(
                    f"remote write accepted: prometheus {took_prom:.1f} s, unity {took_unity:.1f} s"
                )
                started = time.perf_counter()

                async def stored() -> bool:
                    n: int = await pool.fetchval("SELECT count(*) FROM samples")
                    return n >= total

                await wait_for(stored, within=600)
                async with pool.acquire() as conn:
                    # What `unity maintain` does every minute: rollups stored to the watermark.
                    await maintain(conn, settings)
                print(f"unity stored all samples {time.perf_counter() - started:.1f} s later")
                await measure(client, api, read_token, prom.url, end_ms, args.rounds)
    finally:
        proc.terminate()
        proc.wait(30)
        await pool.close()


async def measure(
    client: httpx.AsyncClient, api: str, token: str, prom: str, end_ms: int, rounds: int
) -> None:
    servers = {
        "unity": (f"{api}/prometheus/api/v1/query_range", {"Authorization": f"Bearer {token}"}),
        "prometheus": (f"{prom}/api/v1/query_range", {}),
    }
    print(f"{'query':48} {'unity p50':>10} {'best':>8} {'prom p50':>10} {'best':>8} {'ratio':>6}")
    for query, step in QUERIES:
        # Aligned to the step, as Grafana sends its ranges.
        end = end_ms // (step * 1000) * step
        params = {"start": str(end - DAY_MS // 1000), "end": str(end), "step": str(step)}
        times: dict[str, list[float]] = {name: [] for name in servers}
        points: dict[str, int] = {}
        for i in range(rounds + 1):
            order = list(servers) if i % 2 == 0 else list(reversed(servers))
            for name in order:
                url, headers = servers[name]
                started = time.perf_counter()
                answer = await client.get(url, params=params | {"query": query}, headers=headers)
                elapsed = time.perf_counter() - started
                answer.raise_for_status()
                result = answer.json()["data"]["result"]
                points[name] = sum(len(s["values"]) for s in result)
                if i > 0:
                    times[name].append(elapsed)
        u, p = statistics.median(times["unity"]), statistics.median(times["prometheus"])
        print(
            f"{query + f' @{step}s':48} {u * 1000:8.0f}ms {min(times['unity']) * 1000:6.0f}ms"
            f" {p * 1000:8.0f}ms {min(times['prometheus']) * 1000:6.0f}ms {u / p:6.2f}"
            + ("" if points["unity"] == points["prometheus"] else f"  points differ: {points}"),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--interval", type=int, default=15, help="seconds between samples")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}", flush=True)
    servers = start_servers()
    ts = next(servers)
    try:
        name = f"bench{os.getpid()}"
        ep = asyncio.run(fresh_database(ts, name))
        settings = isolated_settings(ep, name)
        asyncio.run(bench(ep, settings, args, ts.data_dir / "api.log"))
    finally:
        next(servers, None)
    print(f"load average: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
