"""The standalone runner on a real nats-server: runs, reports drops, follows the config bucket."""

from __future__ import annotations

import asyncio
import logging
import re

import msgspec
import pytest
from nats.js import JetStreamContext

from tests.helpers import wait_for
from tests.servers import Env
from unity.ingest.streams import ensure_streams
from unity.schemas import (
    MAX_PAYLOAD_BYTES,
    Event,
    HealthReport,
    MetricBatch,
    PluginSettings,
    decode,
    encode,
    settings_key,
)
from unity.sdk import ConnectionSettings, Metric, Plugin, Sink, Standalone
from unity.sdk.connection import connect_nats


class CounterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    step: int = 1


class Counter(Plugin):
    id = "counter"
    name = "Counter"
    description = "counts its runs"
    Config = CounterConfig
    metrics = (Metric("counter_runs", "runs", "counter", "runs so far"),)

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self.total = 0

    def collect(self, sink: Sink) -> None:
        assert isinstance(self.config, CounterConfig)
        self.total += self.config.step
        sink.add("counter_runs", self.total)


class Bulky(Plugin):
    """Emits a batch over the payload limit."""

    id = "bulky"
    metrics = (Metric("bulky_value", "", "gauge"),)

    def collect(self, sink: Sink) -> None:
        for i in range(4000):
            sink.add("bulky_value", i, {"pad": f"{i:0250d}"})


def connection(env: Env) -> ConnectionSettings:
    return ConnectionSettings(
        url=env.ep.nats_url,
        user=env.ep.nats_user,
        password=env.ep.nats_password,
        subject_root=env.root,
        host="box",
    )


async def test_run_once_publishes_the_batch_and_the_health_report(env: Env) -> None:
    nc = await connect_nats(env.ep, "standalone-test")
    try:
        js = nc.jetstream()
        await ensure_streams(js, env.settings)
        runner = Standalone(Counter(instance="a"), connection(env), watch_config=False)
        await runner.start()
        try:
            result = await runner.run_once()
        finally:
            await runner.stop()
        subjects = env.settings.subjects
        batch_msg = await js.get_last_msg(
            subjects.metrics_stream, subjects.metrics("box", "counter")
        )
        health_msg = await js.get_last_msg(
            subjects.events_stream, subjects.health("box", "counter")
        )
    finally:
        await nc.close()
    assert batch_msg.headers and batch_msg.headers["Nats-Msg-Id"] == f"box:counter:a:{result.seq}"
    batch = decode(batch_msg.data or b"", MetricBatch)
    assert (batch.instance, batch.samples[0].value, batch.samples[0].kind) == ("a", 1.0, "counter")
    report = decode(health_msg.data or b"", HealthReport)
    assert (report.status, report.samples) == ("ok", 1)


async def stored_reports(env: Env, js: JetStreamContext) -> list[HealthReport]:
    subjects = env.settings.subjects
    sub = await js.subscribe(subjects.health("box", "counter"), ordered_consumer=True)
    info = await js.stream_info(subjects.events_stream)
    try:
        msgs = [await sub.next_msg(timeout=5) for _ in range(info.state.messages)]
    finally:
        await sub.unsubscribe()
    return [decode(m.data, HealthReport) for m in msgs]


def dropped_in(report: HealthReport) -> int:
    found = re.search(r"dropped (\d+) message\(s\) since the last delivered report", report.message)
    return int(found.group(1)) if found else 0


async def test_drops_are_named_until_a_report_naming_them_is_stored(env: Env) -> None:
    nc = await connect_nats(env.ep, "standalone-drop-test")
    try:
        js = nc.jetstream()
        runner = Standalone(Counter(), connection(env), watch_config=False, max_buffered=2)
        await runner.start()
        try:
            # No streams yet: each run's batch and report wait in a buffer of two, pushing
            # out the oldest. The second run's report names one drop and is pushed out itself.
            runs = [(await runner.run_once()).report for _ in range(3)]
            assert (runner.publisher.dropped, runner.publisher.buffered) == (4, 2)
            await ensure_streams(js, env.settings)
            assert await runner.publisher.flush()  # the third batch and report
            runs += [(await runner.run_once()).report for _ in range(2)]
        finally:
            await runner.stop()
        delivered = await stored_reports(env, js)
    finally:
        await nc.close()
    assert [r.status for r in runs] == ["ok", "degraded", "degraded", "degraded", "ok"]
    assert [dropped_in(r) for r in runs] == [0, 1, 3, 1, 0]
    # Only the last three reports reached the stream, and together they name every drop.
    assert delivered == runs[2:]
    assert sum(dropped_in(r) for r in delivered) == runner.publisher.dropped == 4
    assert "(4 since start)" in delivered[1].message


async def test_a_refused_batch_is_named_in_the_runs_health_report(env: Env) -> None:
    nc = await connect_nats(env.ep, "standalone-refused-test")
    try:
        await ensure_streams(nc.jetstream(), env.settings)
        runner = Standalone(Bulky(), connection(env), watch_config=False)
        await runner.start()
        try:
            result = await runner.run_once()
        finally:
            await runner.stop()
    finally:
        await nc.close()
    assert result.report.status == "degraded"
    assert "1 of them refused for good" in result.report.message
    assert str(MAX_PAYLOAD_BYTES) in result.report.message
    assert runner.publisher.refused == 1


async def test_stop_counts_and_logs_what_nats_never_took(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "unity.sdk.standalone")
    runner = Standalone(Counter(), connection(env), watch_config=False)
    await runner.start()
    await runner.run_once()  # no streams: the batch and the report stay buffered
    assert runner.publisher.buffered == 2
    await runner.stop()
    assert (runner.publisher.buffered, runner.publisher.dropped) == (0, 2)
    logged = [r.getMessage() for r in caplog.records if r.name == "unity.sdk.standalone"]
    assert any("stopping with 2 message(s)" in m and "NoStreamResponse" in m for m in logged)


def test_apply_refuses_a_bad_config_and_keeps_the_old_one() -> None:
    runner = Standalone(Counter(), ConnectionSettings(host="box"), interval=10)
    bad = encode(PluginSettings(config={"stpe": 2}, revision=1))
    assert not runner.apply(bad)
    assert "unknown key 'stpe'" in runner.state.problem
    assert runner.plugin.config == CounterConfig()
    assert runner.apply(encode(PluginSettings(config={"step": 5}, interval_s=2.0, revision=2)))
    assert (runner.state.pending, runner.state.interval, runner.state.problem) == (
        CounterConfig(step=5),
        2.0,
        "",
    )
    assert runner.plugin.config == CounterConfig()  # swapped in before the next run only
    assert not runner.apply(encode(PluginSettings(interval_s=9.0, revision=1)))  # stale
    assert not runner.apply(b"{not json")
    assert runner.state.interval == 2.0


async def test_interval_enabled_and_config_apply_live_from_the_bucket(env: Env) -> None:
    nc = await connect_nats(env.ep, "standalone-kv-test")
    try:
        js = nc.jetstream()
        await ensure_streams(js, env.settings)
        kv = await js.create_key_value(bucket=env.settings.subjects.config_bucket, history=5)
        plugin = Counter()
        runner = Standalone(plugin, connection(env), interval=3600)
        await runner.start()
        task = asyncio.create_task(runner.run())
        try:
            await wait_for(lambda: runner.runs == 1)  # first run at start, next one in an hour
            key = settings_key("box", "counter")
            await kv.put(
                key, encode(PluginSettings(interval_s=0.1, config={"step": 10}, revision=1))
            )
            await wait_for(lambda: runner.runs >= 4)
            assert plugin.total >= 1 + 3 * 10
            # A value is the whole override: left without interval_s, the interval would be the
            # start's hour again.
            await kv.put(key, encode(PluginSettings(enabled=False, interval_s=0.1, revision=2)))
            # The first skipped tick comes after any run that was in hand; three more due
            # ticks later, no run has happened.
            await wait_for(lambda: runner.skipped >= 1)
            paused_at = runner.runs
            await wait_for(lambda: runner.skipped >= 4)
            assert runner.runs == paused_at
            await kv.put(key, encode(PluginSettings(interval_s=0.1, revision=3)))
            await wait_for(lambda: runner.runs > paused_at)  # enabled again
        finally:
            runner.request_stop()
            await task
            await runner.stop()
            await js.delete_key_value(env.settings.subjects.config_bucket)
    finally:
        await nc.close()


class Eventful(Plugin):
    id = "eventful"
    metrics = (Metric("eventful_runs", "", "counter"),)

    def collect(self, sink: Sink) -> None:
        sink.add("eventful_runs", 1)
        sink.event("inventory", "2 disks", {"disks": ["sda", "sdb"]})
        sink.event("disk_failing", "sdb: 8 reallocated sectors", severity="warning")


async def test_run_once_publishes_the_events_of_a_run_each_with_its_own_msg_id(env: Env) -> None:
    nc = await connect_nats(env.ep, "standalone-test")
    try:
        js = nc.jetstream()
        await ensure_streams(js, env.settings)
        runner = Standalone(Eventful(), connection(env), watch_config=False)
        await runner.start()
        try:
            first = await runner.run_once()
            second = await runner.run_once()
        finally:
            await runner.stop()
        subjects = env.settings.subjects
        sub = await js.subscribe(subjects.events("box", "eventful"), ordered_consumer=True)
        got = [await sub.next_msg(timeout=5) for _ in range(4)]
        info = await js.stream_info(subjects.events_stream)
    finally:
        await nc.close()
    assert [e.kind for e in first.events] == ["inventory", "disk_failing"]
    events = [decode(m.data, Event) for m in got]
    assert [(e.kind, e.severity) for e in events] == [
        ("inventory", "info"),
        ("disk_failing", "warning"),
    ] * 2
    assert events[0].data == {"disks": ["sda", "sdb"]}
    assert [e.ts for e in events] == [first.report.ts] * 2 + [second.report.ts] * 2
    ids = [m.headers["Nats-Msg-Id"] if m.headers else "" for m in got]
    assert ids == [f"box:eventful::{run.seq}:event:{n}" for run in (first, second) for n in (0, 1)]
    # Four events and two health reports: no event was taken for a duplicate of another.
    assert info.state.messages == 6


async def test_stop_ends_a_watch_that_swallowed_its_cancellation(env: Env) -> None:
    """Python 3.11's wait_for (under nats-py's requests) can swallow a cancel: the old stop()
    then waited forever for the watch (`unity plugin run --once` hung 1 run in 10)."""
    runner = Standalone(Counter(), connection(env), watch_config=False)
    await runner.start()
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()  # as wait_for does when the answer lands with the cancel
        await asyncio.sleep(3600)

    runner._watch_task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(runner.stop())
    # A hang guard, not a speed check: the old stop() never returned by itself.
    await asyncio.wait({stopping}, timeout=20)
    if not stopping.done():
        stopping.cancel()
    assert stopping.done() and not stopping.cancelled()
    assert swallowed.is_set() and runner._watch_task.done()
