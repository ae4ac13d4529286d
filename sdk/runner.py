"""One run of one plugin: collect in a worker thread under a timeout, then batch and report.

A failing or hanging ``collect`` becomes a health report with status ``error``; it never becomes
data and never raises to the caller.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas import HealthReport, MetricBatch, Status
from sdk.plugin import Plugin
from sdk.sink import Sink


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run produced: the batch (None when it failed or was empty) and its report."""

    batch: MetricBatch | None
    report: HealthReport
    seq: int


async def collect_once(plugin: Plugin, host: str, timeout: float) -> RunResult:
    """Run ``plugin.collect`` once; ``seq`` is the start time in ms, unique across restarts."""
    started = time.time()
    sink = Sink(plugin.declared())
    status: Status = "ok"
    message = ""
    try:
        await asyncio.wait_for(asyncio.to_thread(plugin.collect, sink), timeout)
    except TimeoutError:
        status, message = "error", f"collect timed out after {timeout:.1f}s"
    except Exception as exc:  # a plugin's failure is reported, never raised
        status, message = "error", f"{type(exc).__name__}: {exc}"
    duration_ms = (time.time() - started) * 1000
    ts = datetime.fromtimestamp(started, UTC)
    seq = int(started * 1000)
    batch = None
    if status == "ok" and sink.samples:
        batch = MetricBatch(
            host=host,
            plugin=plugin.id,
            instance=plugin.instance,
            ts=ts,
            seq=seq,
            samples=sink.samples,
        )
    report = HealthReport(
        host=host,
        plugin=plugin.id,
        instance=plugin.instance,
        ts=ts,
        status=status,
        message=message,
        duration_ms=round(duration_ms, 3),
        samples=len(batch.samples) if batch else 0,
    )
    return RunResult(batch, report, seq)
