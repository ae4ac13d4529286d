"""The sender against the real server: a message NATS can never take does not block the rest."""

from __future__ import annotations

import msgspec

from collectors.config import AgentConfig, CollectorConfig
from collectors.runner import Collector
from compose.connect import connect_nats
from ingest.streams import ensure_streams
from schemas import HealthReport
from sdk import Metric, Plugin, Sink
from tests.conftest import Env


class Huge(Plugin):
    id = "huge"
    metrics = (Metric("huge_value", ""),)

    def collect(self, sink: Sink) -> None:
        for i in range(9000):  # about 1.5 MB of JSON: over nats-server's 1 MB max_payload
            sink.add("huge_value", i, {"slot": f"{i:0>100}"})


class Small(Plugin):
    id = "small"
    metrics = (Metric("small_value", ""),)

    def collect(self, sink: Sink) -> None:
        sink.add("small_value", 1)


async def test_an_oversized_batch_is_dropped_and_counted_and_the_rest_flows(env: Env) -> None:
    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    await ensure_streams(js, env.settings)
    config = CollectorConfig(AgentConfig(host="testhost", self_metrics=False, watch_config=False))
    collector = Collector(env.settings, env.ep, [Huge(), Small()], config=config)
    await collector.start()
    try:
        huge, small = collector.plugins
        assert (await collector.run_once(huge)).batch is not None
        assert (await collector.run_once(small)).batch is not None
    finally:
        await collector.stop(flush_timeout=10)
    assert collector.outbox.dropped == 1
    assert len(collector.outbox) == 0
    subjects = env.settings.subjects
    health = await js.subscribe(f"{env.root}.health.>", ordered_consumer=True)
    reports = [
        msgspec.json.decode((await health.next_msg(timeout=5)).data, type=HealthReport)
        for _ in range(2)
    ]
    assert [(r.plugin, r.status, r.samples) for r in reports] == [
        ("huge", "ok", 9000),
        ("small", "ok", 1),
    ]
    metrics = await js.stream_info(subjects.metrics_stream)
    assert metrics.state.messages == 1  # the small batch; the huge one never reached NATS
    last = await js.get_last_msg(subjects.metrics_stream, subjects.metrics("testhost", "small"))
    assert b"small_value" in (last.data or b"")
    await nc.close()
