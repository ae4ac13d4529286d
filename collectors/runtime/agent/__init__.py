"""The collector's own metrics, published as plugin ``unity-collector``."""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass

from unity.sdk import Metric, Plugin, Sink


@dataclass(frozen=True, slots=True)
class SlotStats:
    plugin: str
    instance: str
    runs: int
    failures: int
    timeouts: int
    skipped: int
    last_duration_s: float


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    slots: tuple[SlotStats, ...]
    published: int
    publish_failures: int
    publish_latency_mean_s: float
    publish_latency_max_s: float
    buffered: int
    buffered_bytes: int
    spooled: int
    dropped: int


class AgentPlugin(Plugin):
    id = "unity-collector"
    name = "Unity collector"
    description = "The collector's own work: runs, failures, publish latency, buffer, drops."
    category = "unity"
    metrics = (
        Metric("collector_runs_total", "", "counter", "plugin runs started"),
        Metric("collector_failures_total", "", "counter", "runs that raised, timed out or hung"),
        Metric("collector_timeouts_total", "", "counter", "runs stopped waiting at the timeout"),
        Metric("collector_skipped_total", "", "counter", "ticks skipped (backoff, still running)"),
        Metric("collector_run_duration_seconds", "seconds", "gauge", "duration of the last run"),
        Metric("collector_published_total", "", "counter", "messages acked by JetStream"),
        Metric("collector_publish_failures_total", "", "counter", "publish attempts that failed"),
        Metric(
            "collector_publish_latency_seconds",
            "seconds",
            "gauge",
            "mean publish-to-ack time since the last report",
        ),
        Metric(
            "collector_publish_latency_max_seconds",
            "seconds",
            "gauge",
            "slowest publish-to-ack time since the last report",
        ),
        Metric("collector_buffer_messages", "", "gauge", "messages waiting (memory and disk)"),
        Metric("collector_buffer_bytes", "bytes", "gauge", "bytes waiting (memory and disk)"),
        Metric("collector_spooled_messages", "", "gauge", "messages waiting in the disk spool"),
        Metric(
            "collector_dropped_total",
            "",
            "counter",
            "messages dropped (buffer or spool full, spool file lost, too big)",
        ),
        Metric("collector_cpu_seconds", "seconds", "counter", "CPU time of the collector process"),
        Metric("collector_max_rss_bytes", "bytes", "gauge", "peak resident memory of the process"),
    )

    def __init__(self, snapshot: Callable[[], AgentSnapshot]) -> None:
        super().__init__()
        self._snapshot = snapshot

    def collect(self, sink: Sink) -> None:
        snap = self._snapshot()
        for slot in snap.slots:
            labels = {"plugin": slot.plugin, "instance": slot.instance}
            sink.add("collector_runs_total", slot.runs, labels)
            sink.add("collector_failures_total", slot.failures, labels)
            sink.add("collector_timeouts_total", slot.timeouts, labels)
            sink.add("collector_skipped_total", slot.skipped, labels)
            sink.add("collector_run_duration_seconds", slot.last_duration_s, labels)
        sink.add("collector_published_total", snap.published)
        sink.add("collector_publish_failures_total", snap.publish_failures)
        sink.add("collector_publish_latency_seconds", snap.publish_latency_mean_s)
        sink.add("collector_publish_latency_max_seconds", snap.publish_latency_max_s)
        sink.add("collector_buffer_messages", snap.buffered)
        sink.add("collector_buffer_bytes", snap.buffered_bytes)
        sink.add("collector_spooled_messages", snap.spooled)
        sink.add("collector_dropped_total", snap.dropped)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        sink.add("collector_cpu_seconds", usage.ru_utime + usage.ru_stime)
        sink.add("collector_max_rss_bytes", usage.ru_maxrss * 1024)
