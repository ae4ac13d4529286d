"""The standalone runner on a real nats-server: runs, reports drops, follows the config bucket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from compose.connect import connect_nats
from ingest.streams import ensure_streams
from schemas import (
    Event,
    HealthReport,
    MetricBatch,
    PluginSettings,
    decode,
    encode,
    settings_key,
)
from sdk import ConnectionSettings, Metric, Plugin, Sink, Standalone
from tests.conftest import Env


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


def connection(env: Env) -> ConnectionSettings:
    return ConnectionSettings(
        url=env.ep.nats_url,
        user=env.ep.nats_user,
        password=env.ep.nats_password,
        subject_root=env.root,
        host="box",
    )


async def until(predicate: Callable[[], bool], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


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


async def test_dropped_messages_are_reported_in_the_next_health_report(env: Env) -> None:
    runner = Standalone(Counter(), connection(env), watch_config=False)
    await runner.start()
    try:
        runner.publisher.dropped = 3  # as if the buffer had overflowed during an outage
        first = await runner.run_once()
        second = await runner.run_once()
    finally:
        await runner.stop()
    assert first.report.status == "degraded"
    assert "dropped 3 message(s)" in first.report.message
    assert second.report.status == "ok"


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
            await until(lambda: runner.runs == 1)  # first run at start, next one in an hour
            key = settings_key("box", "counter")
            await kv.put(
                key, encode(PluginSettings(interval_s=0.1, config={"step": 10}, revision=1))
            )
            await until(lambda: runner.runs >= 4)
            assert plugin.total >= 1 + 3 * 10
            await kv.put(key, encode(PluginSettings(enabled=False, revision=2)))
            await until(lambda: not runner.state.enabled)
            await asyncio.sleep(0.3)  # let a run that had already started finish
            paused_at = runner.runs
            await asyncio.sleep(0.5)
            assert runner.runs == paused_at
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
    assert ids == [
        f"box:eventful::{run.seq * 1000 + n}:event" for run in (first, second) for n in (0, 1)
    ]
    # Four events and two health reports: no event was taken for a duplicate of another.
    assert info.state.messages == 6
