"""One run of one plugin: collect in a worker thread under a timeout, then batch and report.

A failing or hanging ``collect`` becomes a health report with status ``error``; it never becomes
data (samples or events) and never raises to the caller.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from unity.schemas import Event, HealthReport, MetricBatch, Status
from unity.sdk.plugin import Plugin
from unity.sdk.sink import Sink

__all__ = ["RunResult", "SeqClock", "collect_once", "next_tick", "own_health", "run_events"]


class SeqClock:
    """Msg-Id seqs of one plugin instance: the run's start in ms, but never one already used.

    A clock stepped back within the stream's duplicate window would otherwise repeat a seq, and
    JetStream would drop the new message as a duplicate of the old one.
    """

    def __init__(self) -> None:
        self.last = 0

    def next(self, started: float) -> int:
        """The seq of a run that started at ``started`` (epoch seconds)."""
        self.last = max(self.last + 1, int(started * 1000))
        return self.last


def next_tick(now: float, interval: float) -> float:
    """The next multiple of ``interval`` after ``now``: runs line up across hosts."""
    return math.floor(now / interval + 1) * interval


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run produced.

    Attributes:
        batch: The samples, or None when the run failed or added none.
        report: The run's health report.
        seq: The run's start time in ms: the batch's ``seq`` and the base of its Msg-Ids.
        events: The events the run added (``Sink.event``), none when it failed.
    """

    batch: MetricBatch | None
    report: HealthReport
    seq: int
    events: tuple[Event, ...] = ()


def run_events(sink: Sink, plugin: Plugin, host: str, ts: datetime) -> tuple[Event, ...]:
    """The events ``plugin`` added to ``sink``, as published: with host, plugin, instance, time.

    Args:
        sink: The run's sink.
        plugin: The plugin that ran.
        host: The host the events are about.
        ts: The run's start time, given to every event of the run.

    Returns:
        One :class:`~schemas.Event` per ``Sink.event`` call, in order.
    """
    return tuple(
        Event(
            host=host,
            plugin=plugin.id,
            kind=e.kind,
            instance=plugin.instance,
            ts=ts,
            severity=e.severity,
            message=e.message,
            data=e.data,
        )
        for e in sink.events
    )


async def collect_once(
    plugin: Plugin, host: str, timeout: float, clock: SeqClock | None = None
) -> RunResult:
    """Run ``plugin.collect`` once; ``seq`` is the start time in ms, unique across restarts
    (and, with the instance's ``clock``, never repeated when the system clock steps back)."""
    started = time.time()
    sink = Sink(plugin.declared())
    status: Status = "error"
    collected = False
    try:
        await asyncio.wait_for(asyncio.to_thread(plugin.collect, sink), timeout)
    except TimeoutError:
        status, message = "error", f"collect timed out after {timeout:.1f}s"
    except Exception as exc:  # a plugin's failure is reported, never raised
        status, message = "error", f"{type(exc).__name__}: {exc}"
    else:
        collected = True
        status, message = own_health(plugin)
    duration_ms = (time.time() - started) * 1000
    ts = datetime.fromtimestamp(started, UTC)
    seq = int(started * 1000) if clock is None else clock.next(started)
    batch = None
    if collected and sink.samples:
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
    events = run_events(sink, plugin, host, ts) if collected else ()
    return RunResult(batch, report, seq, events)


def own_health(plugin: Plugin) -> tuple[Status, str]:
    """What the plugin says about its run; a failing ``health()`` is an error, not a crash."""
    try:
        health = plugin.health()
    except Exception as exc:  # a plugin's failure is reported, never raised
        return "error", f"health() failed: {type(exc).__name__}: {exc}"
    if health is None:
        return "ok", ""
    return health.status, health.message
