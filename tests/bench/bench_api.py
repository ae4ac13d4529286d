"""The API under 50 concurrent clients: `latest` and a 24-hour query at 1-minute steps.

    .venv/bin/python -m tests.bench.bench_api [--hosts 100] [--per-host 10] [--interval 10]
        [--api DIR[:WORKERS]]... [--rounds 1] [--cases latest-host,query-one,...]

Starts its own nats-server, PostgreSQL and Valkey (tests/servers.py), loads hosts x per-host
series (1 000 by default) with a day of samples at ``interval`` seconds by binary COPY, runs
storage maintenance (partitions, 1m/1h rollups) and writes every series' latest value to Valkey,
then starts the API as its own process (`python -m compose api`, uvicorn) and measures over
real HTTP:

- latest of one host (10 series, selector ``{host="hNN"}``) and of all 1 000 series;
- a 24-hour query of one series at a 60 s step (1 440 points, answered from the 1m rollup);
- the same query for one host's 10 series.

Each case runs with one client (the baseline), with 50 clients flat out (each sends its next
request as soon as the last is answered: the server's saturation, where latency is queueing),
and with 50 clients paced at one request per ``--pace`` seconds each (dashboards refreshing).
Prints p50/p99 per run, requests per second and, unpaced, requests per CPU second of the API's
processes (per core; the steadier figure on shared cores). Clients share the cores with it.

``--api`` (repeatable) names the checkout to run the API from and its number of workers
(``UNITY_API_WORKERS``; default: this checkout, one worker); a third field ``asyncio`` runs it
with uvloop and httptools hidden, so that uvicorn falls back to asyncio's loop and h11 (the
server before issue 18). With several, every case runs
against each in turn, ``--rounds`` times (every other round in reverse order), all on the same
loaded data: the machine is shared and noisy, so two builds compare fairly only when measured
side by side in the same minutes. For the code before a change: `git worktree add DIR REV`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import asyncpg

from tests.servers import fresh_database, isolated_settings, start_servers
from unity.api.tokens import create_token
from unity.compose.embedded import free_port
from unity.ingest.cache import write_latest
from unity.ingest.maintenance import PARTITIONED, Report, ensure_partitions, maintain
from unity.schemas.storage import CachedValue, floor
from unity.sdk.connection import valkey_client
from unity.sdk.settings import Endpoints, Settings

DAY = timedelta(days=1)
CONCURRENCY = 50


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(
    ep: Endpoints, settings: Settings, hosts: int, per_host: int, interval: int
) -> datetime:
    conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
    try:
        rows = await conn.fetch(
            "INSERT INTO series (host, plugin, name, labels, unit)"
            " SELECT 'h' || lpad(h::text, 3, '0'), 'disk', 'disk_used_percent',"
            " jsonb_build_object('mount', 'm' || m), 'percent'"
            " FROM generate_series(0, $1 - 1) h, generate_series(0, $2 - 1) m RETURNING id, host,"
            " labels::text AS labels",
            hosts,
            per_host,
        )
        ids = [r["id"] for r in rows]
        end = floor(datetime.now(UTC), timedelta(minutes=1))
        start = end - DAY
        await ensure_partitions(conn, PARTITIONED[0], start - DAY, end + DAY, Report())
        started = time.perf_counter()
        total = 0
        step = timedelta(seconds=interval)
        t = start
        while t < end:
            chunk_end = min(t + timedelta(hours=1), end)
            batch: list[tuple[datetime, int, float]] = []
            while t < chunk_end:
                batch.extend((t, sid, float((sid * 7 + t.minute) % 100)) for sid in ids)
                t += step
            await conn.copy_records_to_table(
                "samples", records=batch, columns=("time", "series_id", "value")
            )
            total += len(batch)
        took = time.perf_counter() - started
        print(f"loaded {total} rows for {len(ids)} series in {took:.1f} s", flush=True)
        started = time.perf_counter()
        await maintain(conn, settings)
        await conn.execute("ANALYZE")
        print(
            f"maintenance (partitions, rollups): {time.perf_counter() - started:.1f} s", flush=True
        )
    finally:
        await conn.close()
    client = valkey_client(ep)
    try:
        await write_latest(
            client,
            settings.subjects.root,
            [
                CachedValue(
                    r["host"],
                    "disk",
                    "",
                    "disk_used_percent",
                    json.loads(r["labels"]),
                    "percent",
                    "gauge",
                    42.0,
                    end,
                )
                for r in rows
            ],
        )
    finally:
        await client.aclose()
    return end


@dataclass(frozen=True)
class ApiBuild:
    """Where to run the API from (a checkout, e.g. a `git worktree` of the old code) and how."""

    root: Path
    workers: int
    pure: bool = False  # asyncio's loop and h11, whatever is installed

    @classmethod
    def parse(cls, spec: str) -> ApiBuild:
        root, _, rest = spec.partition(":")
        workers, _, loop = rest.partition(":")
        if loop not in ("", "asyncio"):
            raise ValueError(f"--api {spec}: the third field can only be 'asyncio'")
        return cls(Path(root).resolve(), int(workers or 1), loop == "asyncio")

    @property
    def label(self) -> str:
        return f"{self.root.name}:{self.workers}{':asyncio' if self.pure else ''}"


# `python -m unity.compose` with uvloop and httptools unimportable: uvicorn's "auto" choices
# then fall back to asyncio's event loop and the pure-Python h11 parser.
PURE = (
    "import runpy, sys; sys.modules['uvloop'] = None; sys.modules['httptools'] = None; "
    "sys.argv[0] = 'unity'; runpy.run_module('unity.compose', run_name='__main__', alter_sys=True)"
)


def api_process(
    settings: Settings, ep: Endpoints, build: ApiBuild, port: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNITY_")}
    env.update(
        UNITY_NATS_URL=ep.nats_url,
        UNITY_NATS_USER=ep.nats_user or "",
        UNITY_NATS_PASSWORD=ep.nats_password or "",
        UNITY_DATABASE_URL=ep.database_url,
        UNITY_DATABASE_PASSWORD=ep.database_password or "",
        UNITY_VALKEY_URL=ep.valkey_url,
        UNITY_VALKEY_PASSWORD=ep.valkey_password or "",
        UNITY_SUBJECT_ROOT=settings.subject_root,
        UNITY_API_PORT=str(port),
        UNITY_API_WORKERS=str(build.workers),
        UNITY_LOG_LEVEL="WARNING",
    )
    with log.open("ab") as fh:
        # `-m` puts the working directory first on sys.path: the build's own packages load.
        return subprocess.Popen(
            [sys.executable, "-c", PURE, "api"]
            if build.pure
            else [sys.executable, "-m", "unity.compose", "api"],
            env=env,
            cwd=build.root,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


class Connection:
    """A minimal HTTP/1.1 keep-alive client: httpx's own overhead under 50 concurrent requests
    on these cores was larger than the server's, which would measure the client."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {token}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, params: dict[str, str]) -> tuple[int, bytes]:
        target = f"{path}?{urlencode(params)}" if params else path
        request = f"GET {target} HTTP/1.1\r\nHost: bench\r\n{self.auth}\r\n".encode()
        for _ in range(2):  # the server closes keep-alive connections idle for 5 s: reopen once
            if self.reader is None or self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(request)
            try:
                first = await self.reader.readline()
            except (ConnectionResetError, BrokenPipeError):
                first = b""  # closed as the request went out: the server answers with a reset
            if first:
                break
            self.close()
        assert self.reader is not None, "the server closed the connection twice"
        status = int(first.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the API's forked workers), from /proc:
    what a request costs the server, whatever else the shared cores are doing."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = text.rpartition(")")[2].split()
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def measure(
    conns: list[Connection],
    label: str,
    make: Callable[[], tuple[str, dict[str, str]]],
    requests: int,
    concurrency: int,
    pace: float = 0.0,
    server: int | None = None,
) -> None:
    """``requests`` spread over ``concurrency`` clients; each client waits for its answer, and
    with ``pace`` also starts at most one request per ``pace`` seconds (a dashboard refreshing)."""
    took: list[float] = []
    left = [requests]

    async def worker(conn: Connection) -> None:
        await asyncio.sleep(random.uniform(0, pace))
        while left[0] > 0:
            left[0] -= 1
            path, params = make()
            started = time.perf_counter()
            status, body = await conn.get(path, params)
            took.append(time.perf_counter() - started)
            assert status == 200, body[:300]
            await asyncio.sleep(max(0.0, pace - (time.perf_counter() - started)))

    for _ in range(20):  # warm-up: plans and caches
        await conns[0].get(*make())
    cpu = cpu_seconds(server) if server is not None else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns[:concurrency]))
    wall = time.perf_counter() - started
    # Requests per CPU second of the API's processes: requests per second per core.
    per_core = f"  {requests / (cpu_seconds(server) - cpu):6.0f} req/cpu-s" if server else ""
    mode = f"every {pace:g}s" if pace else "flat out"
    print(
        f"{label:<40} clients={concurrency:<3} {mode:<11} n={requests:<5} "
        f"p50={statistics.median(took) * 1000:7.2f} ms  p99={percentile(took, 0.99) * 1000:7.2f} ms"
        f"  {requests / wall:6.0f} req/s{per_core}",
        flush=True,
    )


def server_means(metrics: str) -> dict[str, float]:
    """Mean time the API itself spent per route, from its own /metrics."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        for suffix, into in (("_sum", sums), ("_count", counts)):
            prefix = f"unity_api_request_duration_seconds{suffix}{{"
            if line.startswith(prefix):
                route = line.split('route="')[1].split('"')[0]
                into[route] = float(line.rsplit(" ", 1)[1])
    return {r: sums[r] / counts[r] for r in sums if counts.get(r)}


async def started(port: int, token: str) -> None:
    for _ in range(300):
        try:
            if (await Connection(port, token).get("/api/v1/health", {}))[0] == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the API on port {port} did not start")


async def bench(ep: Endpoints, settings: Settings, args: argparse.Namespace, log: Path) -> None:
    end = await load(ep, settings, args.hosts, args.per_host, args.interval)
    conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
    try:
        _, token = await create_token(conn, "bench", ["read"])
    finally:
        await conn.close()
    builds = [ApiBuild.parse(spec) for spec in args.api or ["."]]
    ports = [free_port() for _ in builds]
    procs = [api_process(settings, ep, b, p, log) for b, p in zip(builds, ports, strict=True)]
    pools = [[Connection(p, token) for _ in range(CONCURRENCY)] for p in ports]
    try:
        for port in ports:
            await started(port, token)
        rng = random.Random(1)
        day = {"start": (end - DAY).isoformat(), "end": end.isoformat(), "step": "60"}

        def host() -> str:
            return f"h{rng.randrange(args.hosts):03d}"

        def latest_host() -> tuple[str, dict[str, str]]:
            return "/api/v1/latest", {"selector": f'{{host="{host()}"}}'}

        def latest_all() -> tuple[str, dict[str, str]]:
            return "/api/v1/latest", {"limit": "1000"}

        def query_one() -> tuple[str, dict[str, str]]:
            mount = rng.randrange(args.per_host)
            selector = f'disk_used_percent{{host="{host()}", mount="m{mount}"}}'
            return "/api/v1/query", {"selector": selector, **day}

        def query_host() -> tuple[str, dict[str, str]]:
            return "/api/v1/query", {"selector": f'{{host="{host()}"}}', **day}

        cases = {
            "latest-host": ("latest, one host (10 series)", latest_host, args.requests),
            "latest-all": ("latest, all series", latest_all, args.requests // 4),
            "query-one": ("query 24 h @ 60 s, one series", query_one, args.requests // 2),
            "query-host": (
                "query 24 h @ 60 s, one host (10 series)",
                query_host,
                args.requests // 4,
            ),
        }
        chosen = args.cases.split(",") if args.cases else list(cases)
        for key in chosen:
            label, make, n = cases[key]
            for round_ in range(args.rounds):
                # Every other round in reverse, so that no build always runs first (or last).
                order = list(zip(builds, pools, procs, strict=True))
                for build, conns, proc in order[::-1] if round_ % 2 else order:
                    tag = f"{label} [{build.label}]"
                    load_now = os.getloadavg()[0]
                    print(f"-- round {round_ + 1}, load average {load_now:.2f}", flush=True)
                    await measure(conns, tag, make, max(n // 4, 50), 1, server=proc.pid)
                    await measure(conns, tag, make, n, CONCURRENCY, server=proc.pid)
                    await measure(conns, tag, make, max(n // 4, 50), CONCURRENCY, args.pace)
        for build, proc in zip(builds, procs, strict=True):
            # A build whose API died (and was restarted by nothing) measured nothing valid.
            assert proc.poll() is None, f"the API of {build.label} exited: see {log}"
        for build, conns in zip(builds, pools, strict=True):
            _, text = await conns[0].get("/metrics", {})
            for route, mean in sorted(server_means(text.decode()).items()):
                print(f"[{build.label}] server-side mean of {route:<30} {mean * 1000:7.2f} ms")
    finally:
        for conns in pools:
            for conn in conns:
                conn.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--per-host", type=int, default=10)
    parser.add_argument("--interval", type=int, default=10, help="seconds between samples")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument(
        "--pace", type=float, default=1.0, help="seconds between one client's requests (paced run)"
    )
    parser.add_argument(
        "--api",
        action="append",
        metavar="DIR[:WORKERS]",
        help="checkout to run the API from, and its uvicorn workers (repeatable; default: .:1)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternations over the --api builds")
    parser.add_argument(
        "--cases", help="comma-separated subset of latest-host,latest-all,query-one,query-host"
    )
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
        next(servers, None)  # runs the generator's cleanup: servers stop, temp data goes
    print(f"load average: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
