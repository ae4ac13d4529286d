"""The scheduler, driven without NATS: what it recorded is what is asserted, never wall time."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence

import msgspec
import pytest

from unity.collectors.runtime.agent import AgentPlugin
from unity.collectors.runtime.config import AgentConfig, CollectorConfig
from unity.collectors.runtime.runner import Collector, Timing
from unity.schemas import HealthReport, MetricBatch
from unity.sdk import Health, Metric, Plugin, Sink
from unity.sdk.runner import next_tick
from unity.sdk.settings import load_settings

INTERVAL = 0.5


class Good(Plugin):
    id = "good"
    metrics = (Metric("good_value", ""),)

    def collect(self, sink: Sink) -> None:
        sink.add("good_value", 1)


class Raises(Plugin):
    id = "raises"

    def collect(self, sink: Sink) -> None:
        raise RuntimeError("boom")


class Hangs(Plugin):
    """Sleeps past its timeout, then returns."""

    id = "hangs"

    def collect(self, sink: Sink) -> None:
        time.sleep(INTERVAL * 2.5)


release = threading.Event()


class Leaks(Plugin):
    """A blocking call that does not return while the collector runs."""

    id = "leaks"

    def collect(self, sink: Sink) -> None:
        release.wait(60)


def collector(
    plugins: Sequence[Plugin],
    *,
    timeout: float = 0.2,
    jitter: float = 0.0,
    max_backoff: float = 300,
) -> Collector:
    settings = load_settings(env={}, host_name="testhost")
    agent = AgentConfig(host="testhost", self_metrics=False, jitter=jitter, max_backoff=max_backoff)
    config = CollectorConfig(agent)
    return Collector(settings, None, plugins, interval=INTERVAL, timeout=timeout, config=config)


async def run_for(c: Collector, seconds: float) -> None:
    await c.start(connect=False)
    task = asyncio.create_task(c.run())
    await asyncio.sleep(seconds)
    await c.stop(flush_timeout=0)
    await task


def of(c: Collector, key: str) -> list[Timing]:
    return [t for t in c.timings if t.key == key]


def queued(c: Collector) -> list[tuple[str, bytes]]:
    return [(m.subject, m.payload) for m in c.outbox.in_memory]


async def test_raising_hanging_and_leaking_plugins_do_not_delay_the_others() -> None:
    release.clear()
    c = collector([Good(), Raises(), Hangs(), Leaks()], max_backoff=2.0)
    try:
        await run_for(c, 5.0)
    finally:
        release.set()
    good = of(c, "good")
    assert len(good) >= 6
    assert all(t.status == "ok" for t in good)
    # Every tick of the good plugin ran: consecutive due times, none skipped or late enough
    # to push a run past the next tick.
    steps = [round((b.due - a.due) / INTERVAL) for a, b in itertools.pairwise(good)]
    assert steps == [1] * len(steps)

    raises = of(c, "raises")
    assert {t.status for t in raises} == {"error"}
    # Backoff: after two failures in a row the gaps between attempts grow.
    gaps = [round((b.due - a.due) / INTERVAL) for a, b in itertools.pairwise(raises)]
    assert gaps[0] == 1 and max(gaps) >= 4
    assert c.slots["raises"].skipped > 0

    hangs = [t.status for t in of(c, "hangs")]
    assert hangs[0] == "timeout" and "busy" in hangs

    leaks = [t.status for t in of(c, "leaks")]
    # One thread, ever: the first run timed out, later ticks found it still running.
    assert leaks.count("timeout") == 1 and set(leaks[1:]) == {"busy"}
    assert sum(1 for t in threading.enumerate() if t.name == "collect-leaks") == 1

    reports = [
        msgspec.json.decode(payload, type=HealthReport)
        for subject, payload in queued(c)
        if ".health." in subject
    ]
    by_plugin = {r.plugin: r for r in reports}
    assert by_plugin["good"].status == "ok"
    assert by_plugin["raises"].message.startswith("RuntimeError: boom")
    assert any("next try in" in r.message for r in reports if r.plugin == "raises")
    assert any("timed out after 0.2s" in r.message for r in reports if r.plugin == "leaks")
    assert any("still running" in r.message for r in reports if r.plugin == "leaks")


class FlakyThenFine(Plugin):
    id = "flaky"
    metrics = (Metric("flaky_value", ""),)

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def collect(self, sink: Sink) -> None:
        self.calls += 1
        if self.calls <= 3:
            raise OSError("device busy")
        sink.add("flaky_value", self.calls)


async def test_backoff_after_consecutive_failures_and_recovery() -> None:
    c = collector([FlakyThenFine()], max_backoff=1.0)
    await run_for(c, 5.0)
    runs = of(c, "flaky")
    assert [t.status for t in runs[:4]] == ["error", "error", "error", "ok"]
    gaps = [round((b.due - a.due) / INTERVAL) for a, b in itertools.pairwise(runs)]
    # fail, fail (then wait 1 s = 2 ticks), fail (2 s, capped at max_backoff 1 s), then every tick
    assert gaps[:3] == [1, 2, 2]
    assert set(gaps[3:]) == {1}
    slot = c.slots["flaky"]
    assert slot.failures == 0 and slot.backoff_until == 0.0 and slot.failed == 3


async def test_runs_line_up_with_the_clock_and_jitter_spreads_the_starts() -> None:
    assert next_tick(100.2, 0.5) == 100.5
    assert next_tick(100.5, 0.5) == 101.0
    assert next_tick(1_700_000_007.0, 60) == 1_700_000_040.0
    c = collector([Good()], jitter=0.4)
    await run_for(c, 3.0)
    runs = of(c, "good")
    assert len(runs) >= 3
    offsets = [t.planned - t.due for t in runs]
    for t in runs:
        assert abs(t.due / INTERVAL - round(t.due / INTERVAL)) < 1e-6
        assert t.started >= t.planned
    # Each run drew its own delay within [0, jitter): ignoring jitter would give all zeros.
    assert all(0 <= o < 0.4 for o in offsets)
    assert len(set(offsets)) == len(offsets) and max(offsets) > 0


class Slow(Plugin):
    id = "slow"
    metrics = (Metric("slow_value", ""),)

    def collect(self, sink: Sink) -> None:
        time.sleep(0.3)
        sink.add("slow_value", 1)


collecting = threading.Event()
finish = threading.Event()


class Held(Plugin):
    """Starts a run, then holds it until the test lets it finish."""

    id = "held"
    metrics = (Metric("held_value", ""),)

    def collect(self, sink: Sink) -> None:
        collecting.set()
        finish.wait(10)
        sink.add("held_value", 1)


async def test_stop_finishes_the_run_in_hand() -> None:
    collecting.clear()
    finish.clear()
    c = collector([Held()], timeout=5.0)
    await c.start(connect=False)
    loop = asyncio.create_task(c.run())
    try:
        deadline = time.monotonic() + 10
        while not collecting.is_set():
            assert time.monotonic() < deadline, "the scheduled run never started"
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(c.stop(flush_timeout=0))
        await asyncio.sleep(0.2)
        assert not stopping.done(), "stop() returned while a run was in hand"
        assert queued(c) == []
    finally:
        finish.set()
    await stopping
    # Queued before stop() returned: the run's batch, then its health report.
    subjects = [s for s, _ in queued(c)]
    assert subjects == ["unity.metrics.testhost.held", "unity.health.testhost.held"]
    await loop
    [run] = of(c, "held")
    assert run.status == "ok"


class Degraded(Plugin):
    id = "degraded"
    metrics = (Metric("half_value", ""),)

    def collect(self, sink: Sink) -> None:
        sink.add("half_value", 0.5)

    def health(self) -> Health:
        return Health("degraded", "one of two devices answered")


async def test_a_degraded_run_still_publishes_its_samples() -> None:
    c = collector([Degraded()])
    await c.start(connect=False)
    result = await c.run_once(c.plugins[0])
    await c.stop(flush_timeout=0)
    assert result.report.status == "degraded"
    assert result.report.message == "one of two devices answered"
    assert result.batch is not None and result.batch.samples[0].value == 0.5


async def test_self_metrics_report_drops_in_a_counter_and_a_degraded_health() -> None:
    settings = load_settings(env={}, host_name="testhost")
    config = CollectorConfig(AgentConfig(host="testhost", buffer_max_messages=3, interval=60))
    c = Collector(settings, None, [Good()], interval=60, config=config)
    await c.start(connect=False)
    good = c.slots["good"].plugin
    for _ in range(4):
        await c.run_once(good)  # 8 messages into room for 3: 5 dropped, oldest first
    agent = c.slots["unity-collector"].plugin
    assert isinstance(agent, AgentPlugin)
    result = await c.run_once(agent)
    await c.stop(flush_timeout=0)
    assert result.report.status == "degraded"
    # 5 dropped before this run, and its own batch, queued ahead of its report, pushed out one more
    assert (
        result.report.message
        == "dropped 6 message(s) since the last report (buffer full: 6), 6 in all"
    )
    assert result.batch is not None
    values = {(s.name, s.labels.get("plugin", "")): s.value for s in result.batch.samples}
    assert values[("collector_dropped_total", "")] == 5
    assert values[("collector_runs_total", "good")] == 4
    assert values[("collector_buffer_messages", "")] == 3
    kinds = {s.name: s.kind for s in result.batch.samples}
    assert kinds["collector_dropped_total"] == "counter"


async def test_events_go_to_the_events_subject_with_their_own_msg_ids() -> None:
    from unity.collectors.plugins.system import SystemPlugin

    c = collector([SystemPlugin()])
    await c.start(connect=False)
    await c.run_once(c.plugins[0])
    await c.stop(flush_timeout=0)
    subjects = [(m.subject, m.msg_id) for m in c.outbox.in_memory]
    assert [s for s, _ in subjects] == [
        "unity.metrics.testhost.system",
        "unity.events.testhost.system",
        "unity.health.testhost.system",
    ]
    batch_id = subjects[0][1]
    assert subjects[1][1] == f"{batch_id}:event:0" and subjects[2][1] == f"{batch_id}:health"


@pytest.mark.parametrize("plugin", [Good(), Slow()])
async def test_batches_carry_the_run_start_as_ts_and_seq(plugin: Plugin) -> None:
    c = collector([plugin], timeout=2.0)
    await c.start(connect=False)
    before = time.time()
    result = await c.run_once(c.plugins[0])
    await c.stop(flush_timeout=0)
    assert result.batch is not None and isinstance(result.batch, MetricBatch)
    assert int(before * 1000) <= result.seq <= time.time() * 1000


async def test_seq_never_repeats_when_the_clock_steps_back() -> None:
    c = collector([Good()])
    await c.start(connect=False)
    good = c.plugins[0]
    first = await c.run_once(good)
    # As if the clock had been a minute ahead at the last run and was then set right.
    ahead = first.seq + 60_000
    c.slots["good"].seq.last = ahead
    second = await c.run_once(good)
    third = await c.run_once(good)
    await c.stop(flush_timeout=0)
    assert (second.seq, third.seq) == (ahead + 1, ahead + 2)
    assert second.batch is not None and second.batch.seq == second.seq
    ids = [m.msg_id for m in c.outbox.in_memory if ".metrics." in m.subject]
    assert len(ids) == len(set(ids)) == 3
