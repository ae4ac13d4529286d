"""The sender against the real server: a message NATS can never take does not block the rest,
and memory past its bound goes to the disk spool instead of being dropped."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import msgspec

from tests.helpers import wait_for
from tests.servers import Env
from unity.collectors.runtime.config import AgentConfig, CollectorConfig
from unity.collectors.runtime.runner import Collector
from unity.collectors.runtime.sender import Sender
from unity.collectors.runtime.spool import DiskSpool, Message, Outbox, SpoolError
from unity.ingest.streams import ensure_streams
from unity.schemas import JSON, HealthReport, encode
from unity.sdk import Metric, Plugin, Sink
from unity.sdk.connection import connect_nats


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

        async def dropped() -> bool:
            return collector.outbox.dropped == 1

        await wait_for(dropped)
        # The next run tells of the drop (self-metrics are off: in a report of its own).
        assert (await collector.run_once(small)).batch is not None
    finally:
        await collector.stop(flush_timeout=10)
    assert collector.outbox.dropped == 1
    assert len(collector.outbox) == 0
    subjects = env.settings.subjects
    health = await js.subscribe(f"{env.root}.health.>", ordered_consumer=True)
    reports = [
        msgspec.json.decode((await health.next_msg(timeout=5)).data, type=HealthReport)
        for _ in range(3)
    ]
    await health.unsubscribe()
    assert [(r.plugin, r.status, r.samples) for r in reports] == [
        ("huge", "ok", 9000),
        ("unity-collector", "degraded", 0),
        ("small", "ok", 1),
    ]
    assert reports[1].message == (
        "dropped 1 message(s) since the last report (over the server's max_payload: 1), 1 in all"
    )
    metrics = await js.stream_info(subjects.metrics_stream)
    assert metrics.state.messages == 1  # the small batch; the huge one never reached NATS
    last = await js.get_last_msg(subjects.metrics_stream, subjects.metrics("testhost", "small"))
    assert b"small_value" in (last.data or b"")
    await nc.close()


class CountingSpool(DiskSpool):
    def __init__(self, folder: Path, max_bytes: int) -> None:
        super().__init__(folder, max_bytes)
        self.written = 0

    def append(self, messages: Sequence[Message]) -> tuple[int, SpoolError | None]:
        written, error = super().append(messages)
        self.written += written
        return written, error


async def test_memory_past_its_bound_goes_to_the_spool_not_away(env: Env, tmp_path: Path) -> None:
    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    await ensure_streams(js, env.settings)
    host = f"slow-{uuid.uuid4().hex[:8]}"
    subject = env.settings.subjects.health(host, "slow")
    disk = CountingSpool(tmp_path / "spool", max_bytes=1_000_000)
    outbox = Outbox(max_messages=4, disk=disk)
    await outbox.open()
    sender = Sender(outbox, lambda: js, lambda: nc.is_connected, ack_timeout=5)
    # Seven messages while the sender is busy elsewhere (NATS connected but slow to ack).
    sent = [
        Message(
            subject,
            encode(HealthReport(host=host, plugin="slow", status="ok", message=str(n)), JSON),
            f"{host}:slow::{n}:health",
            JSON,
        )
        for n in range(7)
    ]
    for message in sent:
        sender.put(message)
    assert await sender.send_pending()
    await outbox.close()
    assert outbox.dropped == 0
    assert disk.written == 7, "the overflow went through the spool"
    sub = await js.subscribe(subject, ordered_consumer=True)
    got = [(await sub.next_msg(timeout=5)).data for _ in sent]
    await sub.unsubscribe()
    assert got == [m.payload for m in sent]
    await nc.close()
