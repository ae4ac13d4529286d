"""SDK publisher: flushing a backlog with pipelined PubAcks against one-at-a-time, in one run.

    .venv/bin/python -m tests.bench.bench_sdk_publisher [--batches 5000] [--samples 100]

Starts its own embedded nats-server (JetStream, file storage) on a free port. For each window
size, a ``sdk.Publisher`` first buffers ``--batches`` batches while no stream takes the subject
(as during an outage), then the stream appears and ``flush()`` is timed until every PubAck is in.
``max_in_flight=1`` is the baseline (wait for each PubAck before the next publish, as the walking
skeleton did). Prints batches/s and samples/s of each and the ratio. A live collector publishes
one batch per run and waits for it; the backlog after an outage is where the window matters.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import nats
from nats.js.api import StreamConfig

from unity.compose.embedded import NatsServer, free_port
from unity.schemas import MetricBatch, Sample, Subjects
from unity.sdk import Publisher


def batches(n: int, samples: int) -> list[MetricBatch]:
    return [
        MetricBatch(
            host="bench",
            plugin="pub",
            seq=i,
            ts=1_795_435_200.0 + i,
            samples=[Sample(f"m{j % 20}", float(i * j), {"i": str(j)}) for j in range(samples)],
        )
        for i in range(n)
    ]


async def measure(
    url: str, user: str, password: str, work: list[MetricBatch], window: int
) -> float:
    nc = await nats.connect(url, user=user, password=password)
    try:
        js = nc.jetstream()
        subjects = Subjects(f"b{uuid.uuid4().hex[:8]}")
        pub = Publisher(
            js,
            subjects,
            max_in_flight=window,
            max_buffered=len(work),
            backoff_min=3600.0,
            backoff_max=3600.0,
        )
        for batch in work:
            await pub.publish_batch(batch)  # the first fails (no stream), the rest wait behind it
        assert pub.buffered == len(work) and pub.failures == 1
        stream = StreamConfig(name=subjects.metrics_stream, subjects=[f"{subjects.root}.>"])
        await js.add_stream(stream)
        started = time.perf_counter()
        assert await pub.flush() and pub.published == len(work), "not everything was acked"
        elapsed = time.perf_counter() - started
        await js.delete_stream(subjects.metrics_stream)
        return elapsed
    finally:
        await nc.close()


async def bench(n: int, samples: int, rounds: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="unity-bench-pub-"))
    server = NatsServer(data, free_port(), "bench", uuid.uuid4().hex)
    server.start()
    try:
        url = f"nats://127.0.0.1:{server.port}"
        work = batches(n, samples)
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{n} batches x {samples} samples, JSON, JetStream file storage")
        results: dict[int, list[float]] = {1: [], 256: []}
        for _ in range(rounds):  # interleaved, so both see the same machine load
            for window, times in results.items():
                times.append(await measure(url, server.user, server.password, work, window))
        for window, times in results.items():
            elapsed = statistics.median(times)
            print(
                f"max_in_flight={window:>4}: {n / elapsed:9.0f} batches/s"
                f" {n * samples / elapsed:11.0f} samples/s (median of {rounds}: {elapsed:.2f} s;"
                f" all: {', '.join(f'{t:.2f}' for t in times)})"
            )
        ratio = statistics.median(results[1]) / statistics.median(results[256])
        print(f"pipelined / one-at-a-time: {ratio:.1f}x")
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # The first publish of each round fails on purpose (no stream yet); its warning is noise here.
    logging.getLogger("unity.sdk.publisher").setLevel(logging.ERROR)
    asyncio.run(bench(args.batches, args.samples, args.rounds))


if __name__ == "__main__":
    main()
