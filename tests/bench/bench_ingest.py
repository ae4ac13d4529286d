"""Ingest throughput against the database's own COPY ceiling, and latency at a steady load.

    .venv/bin/python -m tests.bench.bench_ingest [--samples 2000000] [--workers 1 2]
        [--rounds 3] [--fetch N] [--pullers N]
    .venv/bin/python -m tests.bench.bench_ingest --decode-only [--samples 2000000]

Starts its own nats-server, PostgreSQL and Valkey (as the tests do; or the UNITY_TEST_* URLs),
then in one run:

(a) baseline: raw asyncpg binary COPY (``copy_records_to_table``) of exactly the benchmark's rows
    (100 per message, 1 000 series) into the ``samples`` table of a freshly migrated, empty
    database (same partitions and indexes as ingest writes to), one transaction per 50 000 rows
    as ingest commits them; (a') the same with the binary COPY data ingest builds itself;
(b) ingest: the stream preloaded with the same samples, drained by ``unity ingest --workers N``
    into another fresh database, committed and acked; timed from the first ack to the last;
(c) latency: one worker, a steady 20 000 samples/s for ``--latency-seconds`` (after 2 s of
    warm-up that creates the series); publish-to-commit
    per message is publish time -> the consumer's ack floor passing its stream sequence (acks
    go out after the commit, so this is an upper bound).

(a), (a') and (b) alternate for ``--rounds`` rounds. Prints both rates and the ratio (b)/(a)
of each round for each worker count, the median ratio over the rounds, and latency p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tests.integration.ingest_support import child_env
from tests.servers import TestServers, drop_database, drop_root, fresh_database, isolated_settings
from tests.servers import start_servers as session_servers
from unity.ingest.catalogue import Catalogue, SeriesKey
from unity.ingest.copyformat import copy_data, copy_packed
from unity.ingest.decoder import Decoder
from unity.ingest.maintenance import maintain
from unity.ingest.streams import ensure_consumers, ensure_streams
from unity.schemas import MetricBatch, Sample, decode, encode
from unity.schemas.storage import DURABLE
from unity.sdk.connection import connect_nats
from unity.sdk.settings import Endpoints, Settings

PER_MESSAGE = 100
HOSTS = 10  # x 100 label values = 1 000 series
COMMIT_ROWS = 50_000


def message(m: int, base: float) -> MetricBatch:
    """Message ``m``: host h<m % 10>, 100 series of that host, its own timestamp."""
    return MetricBatch(
        host=f"h{m % HOSTS}",
        plugin="bench",
        ts=base + (m // HOSTS) * 0.01,
        seq=m,
        samples=[
            Sample("bench_value", float(m * PER_MESSAGE + i), {"slot": str(i)}, "percent")
            for i in range(PER_MESSAGE)
        ],
    )


def baseline_rows(messages: int, base: float) -> Iterator[list[tuple[datetime, int, float]]]:
    """The same (time, series, value) rows ingest will write, series numbered 1..1000."""
    rows: list[tuple[datetime, int, float]] = []
    for m in range(messages):
        ts = datetime.fromtimestamp(base + (m // HOSTS) * 0.01, UTC)
        first = (m % HOSTS) * PER_MESSAGE + 1
        rows.extend((ts, first + i, float(m * PER_MESSAGE + i)) for i in range(PER_MESSAGE))
        if len(rows) >= COMMIT_ROWS:
            yield rows
            rows = []
    if rows:
        yield rows


async def prepare(ep: Endpoints, settings: Settings) -> None:
    conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
    try:
        await maintain(conn, settings)
    finally:
        await conn.close()


async def bench_copy(
    ep: Endpoints, settings: Settings, messages: int, base: float, *, own_encoder: bool
) -> float:
    """asyncpg's copy_records_to_table, or (own_encoder) the binary COPY data ingest builds."""
    await prepare(ep, settings)
    chunks = list(baseline_rows(messages, base))
    # Ingest keeps times as integer microseconds: give (a') the rows in that form, prepared.
    micros = [[(round(t.timestamp() * 1e6), s, v) for t, s, v in rows] for rows in chunks]
    conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
    columns = ("time", "series_id", "value")
    try:
        started = time.perf_counter()
        for rows, int_rows in zip(chunks, micros, strict=True):
            async with conn.transaction():
                if own_encoder:
                    data = copy_data(int_rows)
                    await conn.copy_to_table(
                        "samples", source=memoryview(data), columns=columns, format="binary"
                    )
                else:
                    await conn.copy_records_to_table("samples", records=rows, columns=columns)
        took = time.perf_counter() - started
        stored = await conn.fetchval("SELECT count(*) FROM samples")
    finally:
        await conn.close()
    assert stored == messages * PER_MESSAGE, stored
    return messages * PER_MESSAGE / took


async def preload(js: JetStreamContext, settings: Settings, messages: int, base: float) -> None:
    subjects = settings.subjects
    pending = []
    for m in range(messages):
        batch = message(m, base)
        pending.append(
            js.publish(
                subjects.metrics(batch.host, batch.plugin),
                encode(batch),
                headers={"Nats-Msg-Id": f"{batch.host}:bench::{m}"},
            )
        )
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)


def ingest_env(ep: Endpoints, settings: Settings, data: Path) -> dict[str, str]:
    return child_env(
        ep, settings.subject_root, data, ingest_report_interval_s="0", log_level="WARNING"
    )


def spawn_ingest(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "unity.compose", "ingest", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def bench_ingest(
    ep: Endpoints,
    settings: Settings,
    messages: int,
    base: float,
    workers: int,
    data: Path,
    tuning: dict[str, str],
) -> float:
    await prepare(ep, settings)
    nc = await connect_nats(ep, "bench")
    js = nc.jetstream()
    try:
        await ensure_streams(js, settings)
        await ensure_consumers(js, settings)
        await preload(js, settings, messages, base)
        log = data / f"ingest-{workers}.log"
        env = child_env(
            ep,
            settings.subject_root,
            data,
            ingest_report_interval_s="0",
            log_level="WARNING",
            **tuning,
        )
        proc = spawn_ingest(env, log, "--workers", str(workers))
        stream = settings.subjects.metrics_stream
        first: float | None = None
        try:
            while True:
                info = await js.consumer_info(stream, DURABLE)
                now = time.perf_counter()
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                if first is None and floor > 0:
                    first = now
                if not info.num_pending and not info.num_ack_pending and floor >= messages:
                    last = now
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"ingest exited; see {log}")
                await asyncio.sleep(0.02)
        finally:
            proc.terminate()
            proc.wait(120)
        assert first is not None
    finally:
        await nc.close()
    conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM samples")
    finally:
        await conn.close()
    assert stored == messages * PER_MESSAGE, stored
    # The first ack comes after the first commit: add one batch's worth to the measured span.
    fetch = int(tuning.get("ingest_fetch", settings.ingest_fetch))
    drained = messages * PER_MESSAGE - min(messages, fetch) * PER_MESSAGE
    if drained <= 0 or last <= first:
        raise SystemExit(f"--samples too small: (b) needs more than one fetch ({fetch} messages)")
    return drained / (last - first)


async def bench_latency(
    ep: Endpoints, settings: Settings, seconds: float, rate: int, data: Path
) -> list[float]:
    await prepare(ep, settings)
    nc = await connect_nats(ep, "bench-latency")
    js = nc.jetstream()
    await ensure_streams(js, settings)
    await ensure_consumers(js, settings)
    proc = spawn_ingest(
        child_env(
            ep, settings.subject_root, data, ingest_report_interval_s="0", log_level="WARNING"
        ),
        data / "ingest-latency.log",
    )
    sent: dict[int, tuple[float, bool]] = {}
    latencies: list[float] = []
    stream = settings.subjects.metrics_stream
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set() or sent:
            info = await js.consumer_info(stream, DURABLE)
            now = time.perf_counter()
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            for seq in [s for s in sent if s <= floor]:
                at, measured = sent.pop(seq)
                if measured:
                    latencies.append(now - at)
            await asyncio.sleep(0.005)

    try:
        await asyncio.sleep(3.0)  # the worker starts and binds
        watcher = asyncio.create_task(watch())
        per_second = rate // PER_MESSAGE
        base = time.time() - 600
        start = time.perf_counter()
        warm_up = 2 * per_second  # the first 2 s create the series: not steady state
        for m in range(int(seconds * per_second) + warm_up):
            due = start + m / per_second
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            batch = message(m, base)
            at = time.perf_counter()
            ack = await js.publish(
                settings.subjects.metrics(batch.host, batch.plugin), encode(batch)
            )
            sent[ack.seq] = (at, m >= warm_up)
        done.set()
        await asyncio.wait_for(watcher, 60)
    finally:
        proc.terminate()
        proc.wait(60)
        await nc.close()
    return latencies


def bench_decode(rounds: int) -> None:
    """CPU time per sample of ingest's decode path on one 500-message fetch, in this process.

    The path is what a worker does between fetch and commit: ``Decoder.decode`` (msgspec decode,
    ``split_batch``, series ids, packed rows, newest values), the COPY data and the
    ``LatestValue`` list; the series are cached as after a worker's first commit. Baseline in
    the same run: msgspec ``decode`` of the same messages alone, the floor of the path.
    """
    now = datetime.now(UTC)
    base = now.timestamp() - 3600
    msgs = []
    for m in range(500):
        batch = message(m, base)
        reply = f"$JS.ACK.UNITY_METRICS.ingest.1.{m + 1}.{m + 1}.{time.time_ns()}.0"
        subject = f"unity.metrics.{batch.host}.{batch.plugin}"
        msgs.append(Msg(cast(Any, None), subject=subject, reply=reply, data=encode(batch)))
    catalogue = Catalogue()
    decoder = Decoder(catalogue)
    first = decoder.decode(msgs)
    ids: dict[SeriesKey, int] = {}
    for _, _, spec in first.unresolved:
        ids.setdefault(spec.key, len(ids) + 1)
    catalogue.learn(ids, first.unresolved)

    def path() -> None:
        work = decoder.decode(msgs)
        copy_packed(work.rows)
        work.latest()

    def floor() -> None:
        for msg in msgs:
            decode(msg.data, MetricBatch)

    samples = len(msgs) * PER_MESSAGE * rounds
    for name, run_once in (("msgspec decode alone", floor), ("ingest decode path", path)):
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for _ in range(rounds):
                run_once()
            best = min(best, time.process_time() - started)
        print(
            f"{name:>22}: {samples / best:12,.0f} samples/s of CPU"
            f" ({best / samples * 1e6:.2f} us a sample)",
            flush=True,
        )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(servers: TestServers, args: argparse.Namespace, data: Path) -> None:
    messages = args.samples // PER_MESSAGE
    base = float(int(time.time()) - 3600)
    print(
        f"N={messages * PER_MESSAGE} samples, {messages} messages of {PER_MESSAGE},"
        f" {HOSTS * PER_MESSAGE} series; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    made: list[tuple[str, Endpoints, Settings]] = []
    tuning = {
        key: str(value)
        for key, value in (("ingest_fetch", args.fetch), ("ingest_pullers", args.pullers))
        if value is not None
    }
    if tuning:
        print(f"ingest settings for (b): {tuning}", flush=True)

    async def drop_scratch() -> None:
        while made:
            name, ep, settings = made.pop()
            await drop_root(ep, settings)
            await drop_database(servers, name)

    async def scratch() -> tuple[Endpoints, Settings]:
        name = f"bench{uuid.uuid4().hex[:10]}"
        ep = await fresh_database(servers, name)
        settings = isolated_settings(ep, name)
        made.append((name, ep, settings))
        return ep, settings

    ratios: dict[int, list[float]] = {w: [] for w in args.workers}
    try:
        # Baseline and ingest alternate, round after round: on shared cores the COPY ceiling
        # itself moves by 2x within minutes, so only a ratio measured side by side means much.
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_} of {args.rounds}", flush=True)
            ep, settings = await scratch()
            copy_rate = await bench_copy(ep, settings, messages, base, own_encoder=False)
            print(f"(a) raw asyncpg COPY into samples: {copy_rate:12,.0f} samples/s", flush=True)
            ep, settings = await scratch()
            own_rate = await bench_copy(ep, settings, messages, base, own_encoder=True)
            print(
                f"(a') COPY of ingest's binary data:   {own_rate:12,.0f} samples/s"
                " (the encoding ingest uses; includes building it)",
                flush=True,
            )
            for workers in args.workers:
                ep, settings = await scratch()
                rate = await bench_ingest(ep, settings, messages, base, workers, data, tuning)
                ratios[workers].append(rate / copy_rate)
                print(
                    f"(b) ingest, {workers} worker(s):         {rate:12,.0f} samples/s"
                    f"   ratio (b)/(a) = {rate / copy_rate:.2f}"
                    f"   (b)/(a') = {rate / own_rate:.2f}   load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
            await drop_scratch()
        for workers, values in ratios.items():
            print(
                f"ratio (b)/(a), {workers} worker(s), {len(values)} round(s):"
                f" median {statistics.median(values):.2f}"
                f" (min {min(values):.2f}, max {max(values):.2f})",
                flush=True,
            )
        if args.latency_seconds > 0:
            ep, settings = await scratch()
            lat = await bench_latency(ep, settings, args.latency_seconds, args.rate, data)
            print(
                f"(c) publish-to-commit at {args.rate:,} samples/s for {args.latency_seconds:.0f} s"
                f" ({len(lat)} messages): p50 {statistics.median(lat) * 1000:.1f} ms,"
                f" p99 {pct(lat, 0.99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms",
                flush=True,
            )
    finally:
        await drop_scratch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3, help="alternations of (a) and (b)")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=20_000, help="samples/s for (c)")
    parser.add_argument("--fetch", type=int, help="messages per fetch in (b) (default: settings)")
    parser.add_argument("--pullers", type=int, help="pullers per worker in (b) (default: settings)")
    parser.add_argument(
        "--decode-only",
        action="store_true",
        help="only the CPU time of the decode path, in this process (no servers)",
    )
    args = parser.parse_args()
    if args.decode_only:
        print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
        bench_decode(max(1, args.samples // (500 * PER_MESSAGE)))
        return
    data = Path(tempfile.mkdtemp(prefix="unity-bench-"))
    with contextlib.contextmanager(session_servers)() as servers:
        asyncio.run(run(servers, args, data))
    print(f"logs in {data}", flush=True)


if __name__ == "__main__":
    main()
