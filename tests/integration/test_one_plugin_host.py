"""One plugin, two hosts: under the collector and under `Standalone` (`unity plugin run`) it gives
the same subjects, Msg-Id formats and health reports, and both keep seqs unique when the clock
steps back."""

from __future__ import annotations

import re

from nats.aio.msg import Msg

from tests.servers import Env
from unity.collectors.runtime.config import AgentConfig, CollectorConfig
from unity.collectors.runtime.runner import Collector
from unity.ingest.streams import ensure_streams
from unity.schemas import HealthReport, PluginSettings, decode, encode
from unity.sdk import ConnectionSettings, Metric, Plugin, Sink, Standalone
from unity.sdk.connection import connect_nats


class Twin(Plugin):
    id = "twin"
    metrics = (Metric("twin_value", "", "gauge", "a value"),)

    def collect(self, sink: Sink) -> None:
        sink.add("twin_value", 1.0)
        sink.event("inventory", "two events", {"n": 1})
        sink.event("inventory", "per run")


def shape(msg_id: str, seq: int) -> str:
    return re.sub(rf"\b{seq}\b", "<seq>", msg_id)


def report_of(report: HealthReport) -> tuple[str, str, str, str, int]:
    return (report.host, report.plugin, report.instance, report.status, report.samples)


async def collector_run(env: Env) -> tuple[list[tuple[str, str]], HealthReport]:
    agent = AgentConfig(host="box", self_metrics=False)
    c = Collector(env.settings, None, [Twin(instance="a")], config=CollectorConfig(agent))
    await c.start(connect=False)
    (result,) = await c.collect_all()
    await c.stop(flush_timeout=0)
    out = [(subject, shape(mid, result.seq)) for subject, mid, _ in c.envelopes(result)]
    return out, result.report


async def standalone_run(env: Env) -> tuple[list[tuple[str, str]], HealthReport]:
    nc = await connect_nats(env.ep, "one-host-test")
    try:
        js = nc.jetstream()
        await ensure_streams(js, env.settings)
        conn = ConnectionSettings(
            url=env.ep.nats_url,
            user=env.ep.nats_user,
            password=env.ep.nats_password,
            subject_root=env.root,
            host="box",
        )
        runner = Standalone(Twin(instance="a"), conn, watch_config=False)
        await runner.start()
        try:
            result = await runner.run_once()
        finally:
            await runner.stop()
        msgs: list[Msg] = []
        for kind, count in (("metrics", 1), ("events", 2), ("health", 1)):
            sub = await js.subscribe(f"{env.root}.{kind}.box.twin", ordered_consumer=True)
            msgs += [await sub.next_msg(timeout=5) for _ in range(count)]
            await sub.unsubscribe()
    finally:
        await nc.close()
    out = [(m.subject, shape((m.headers or {})["Nats-Msg-Id"], result.seq)) for m in msgs]
    health = next(m for m in msgs if ".health." in m.subject)
    return out, decode(health.data, HealthReport)


async def test_the_collector_and_standalone_publish_alike(env: Env) -> None:
    collected, collected_report = await collector_run(env)
    published, published_report = await standalone_run(env)
    root = env.root
    assert (
        collected
        == published
        == [
            (f"{root}.metrics.box.twin", "box:twin:a:<seq>"),
            (f"{root}.events.box.twin", "box:twin:a:<seq>:event:0"),
            (f"{root}.events.box.twin", "box:twin:a:<seq>:event:1"),
            (f"{root}.health.box.twin", "box:twin:a:<seq>:health"),
        ]
    )
    assert (
        report_of(collected_report)
        == report_of(published_report)
        == (
            "box",
            "twin",
            "a",
            "ok",
            1,
        )
    )


async def test_standalone_seqs_stay_unique_when_the_clock_steps_back(env: Env) -> None:
    nc = await connect_nats(env.ep, "one-host-test")
    try:
        await ensure_streams(nc.jetstream(), env.settings)
    finally:
        await nc.close()
    conn = ConnectionSettings(
        url=env.ep.nats_url,
        user=env.ep.nats_user,
        password=env.ep.nats_password,
        subject_root=env.root,
        host="box",
    )
    runner = Standalone(Twin(), conn, watch_config=False)
    await runner.start()
    try:
        first = await runner.run_once()
        # As if the clock had been a minute ahead at the last run and was then set right.
        ahead = first.seq + 60_000
        runner._seq.last = ahead
        second = await runner.run_once()
        third = await runner.run_once()
    finally:
        await runner.stop()
    assert (second.seq, third.seq) == (ahead + 1, ahead + 2)
    assert second.batch is not None and second.batch.seq == second.seq


SEQUENCE: list[tuple[PluginSettings | None, bool]] = [
    (PluginSettings(interval_s=5.0, revision=2), True),
    (PluginSettings(interval_s=7.0, revision=1), False),  # stale
    (PluginSettings(enabled=False, revision=3), True),
    (PluginSettings(interval_s=9.0, revision=3), False),  # not above the last applied
    (None, True),  # deleted: back to the start config, the revision forgotten
    (PluginSettings(interval_s=4.0, revision=1), True),
    (PluginSettings(config={"bogus": 1}, revision=5), False),  # refused: not remembered
    (PluginSettings(interval_s=6.0, revision=5), True),
]


async def test_both_hosts_follow_one_revision_and_delete_rule(env: Env) -> None:
    agent = AgentConfig(host="box", self_metrics=False, interval=10.0)
    c = Collector(env.settings, None, [Twin(instance="a")], config=CollectorConfig(agent))
    await c.start(connect=False)
    conn = ConnectionSettings(url=env.ep.nats_url, subject_root=env.root, host="box")
    runner = Standalone(Twin(instance="a"), conn, interval=10.0)
    key = "box.twin.a"
    seen: dict[str, list[tuple[bool, float, bool]]] = {"collector": [], "standalone": []}
    try:
        for value, expected in SEQUENCE:
            raw, op = (None, "DEL") if value is None else (encode(value), None)
            slot = c.slots["twin:a"]
            got = c.watch.handle(key, raw, op)
            seen["collector"].append((got, slot.spec.interval, slot.spec.enabled))
            got = runner.watch.handle(key, raw, op)
            seen["standalone"].append((got, runner.state.interval, runner.state.enabled))
            assert got is expected, value
    finally:
        await c.stop(flush_timeout=0)
    assert seen["collector"] == seen["standalone"]
    assert [(i, e) for _, i, e in seen["standalone"]] == [
        (5.0, True),
        (5.0, True),
        (10.0, False),
        (10.0, False),
        (10.0, True),
        (4.0, True),
        (4.0, True),
        (6.0, True),
    ]
