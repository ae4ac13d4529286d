"""Ingest's own metrics, published as the plugin ``unity-ingest`` through its own pipeline."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from datetime import UTC, datetime

from unity.ingest.pipeline import Stats
from unity.schemas import HealthReport, MetricBatch, Sample, Status

PLUGIN = "unity-ingest"


class Reporter:
    """Turns the worker's counters into one batch per interval (rates over that interval)."""

    def __init__(self, host: str, instance: str) -> None:
        self.host = host
        self.instance = instance
        self._last_time = time.monotonic()
        self._last_samples = 0

    def batch(
        self,
        stats: Stats,
        pending: dict[str, tuple[int, int]],
        valkey_failures: int,
        valkey_waiting: int,
    ) -> tuple[MetricBatch, HealthReport]:
        """``pending`` maps a stream to (messages not yet delivered, delivered but unacked)."""
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-6)
        rate = (stats.samples - self._last_samples) / elapsed
        self._last_time, self._last_samples = now, stats.samples
        commits = sorted(stats.commit_seconds)
        stats.commit_seconds.clear()
        samples = [
            Sample("ingest_batches_total", stats.batches, kind="counter"),
            Sample("ingest_messages_total", stats.messages, kind="counter"),
            Sample("ingest_samples_total", stats.samples, kind="counter"),
            Sample("ingest_samples_per_second", round(rate, 3), unit="per_second"),
            Sample("ingest_series_lookups_total", stats.series_looked_up, kind="counter"),
            Sample("ingest_merges_total", stats.merges, kind="counter"),
            Sample("ingest_redeliveries_total", stats.redelivered, kind="counter"),
            Sample("ingest_conflicts_total", stats.conflicts, kind="counter"),
            Sample("ingest_lp_strings_skipped_total", stats.strings_skipped, kind="counter"),
            Sample("ingest_valkey_failures_total", valkey_failures, kind="counter"),
            Sample("ingest_valkey_waiting_series", valkey_waiting),
        ]
        if commits:
            samples += [
                Sample("ingest_commit_seconds", _quantile(commits, q), {"quantile": str(q)}, "s")
                for q in (0.5, 0.99, 1.0)
            ]
        for stream, (undelivered, unacked) in sorted(pending.items()):
            samples.append(Sample("ingest_consumer_pending", undelivered, {"stream": stream}))
            samples.append(Sample("ingest_consumer_ack_pending", unacked, {"stream": stream}))
        dead: Counter[str] = stats.dead
        samples += [
            Sample("ingest_dlq_total", n, {"reason": reason}, kind="counter")
            for reason, n in sorted(dead.items())
        ]
        ts = datetime.now(UTC)
        seq = int(ts.timestamp() * 1000)
        status: Status = "degraded" if valkey_waiting else "ok"
        message = f"valkey down: {valkey_waiting} series wait" if valkey_waiting else ""
        batch = MetricBatch(
            host=self.host, plugin=PLUGIN, instance=self.instance, ts=ts, seq=seq, samples=samples
        )
        report = HealthReport(
            host=self.host,
            plugin=PLUGIN,
            instance=self.instance,
            ts=ts,
            status=status,
            message=message,
            duration_ms=0.0,
            samples=len(samples),
        )
        return batch, report


def _quantile(ordered: list[float], q: float) -> float:
    if q >= 1.0 or len(ordered) == 1:
        return ordered[-1]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]
