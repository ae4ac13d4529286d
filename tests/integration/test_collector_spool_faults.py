"""The disk spool breaks under a running collector: the sender goes on, and counts what it lost.

A spool file corrupted since the last run is set aside and the rest is sent; a spool folder
removed during an outage is made again, the messages it held are counted as lost, and what
came after arrives once NATS is back. Losses are told in a ``unity-collector`` health report
even with self-metrics off.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import uuid
from pathlib import Path

import msgspec
import pytest
from nats.js import JetStreamContext

from tests.helpers import on_nats, private_nats, wait_for
from tests.servers import Env
from unity.collectors.runtime.config import AgentConfig, CollectorConfig
from unity.collectors.runtime.runner import Collector
from unity.collectors.runtime.sender import Sender
from unity.collectors.runtime.spool import DiskSpool, Message, Outbox
from unity.ingest.streams import ensure_streams
from unity.schemas import JSON, HealthReport, MetricBatch, encode
from unity.sdk import Metric, Plugin, Sink
from unity.sdk.connection import connect_nats
from unity.sdk.settings import Endpoints


class Small(Plugin):
    id = "small"
    metrics = (Metric("small_value", ""),)

    def collect(self, sink: Sink) -> None:
        sink.add("small_value", 1)


def collector(env: Env, ep: Endpoints, host: str, spool: Path) -> Collector:
    agent = AgentConfig(
        host=host, spool_dir=str(spool), self_metrics=False, watch_config=False, ack_timeout=1
    )
    return Collector(env.settings, ep, [Small()], config=CollectorConfig(agent))


async def read_all(js: JetStreamContext, subject: str) -> list[bytes]:
    sub = await js.subscribe(subject, ordered_consumer=True)
    found: list[bytes] = []
    with contextlib.suppress(TimeoutError):
        while True:
            found.append((await sub.next_msg(timeout=2)).data)
    await sub.unsubscribe()
    return found


def spool_names(folder: Path, pattern: str) -> list[str]:
    return sorted(p.name for p in folder.glob(pattern))


async def test_a_corrupt_spool_file_is_set_aside_and_counted_and_the_rest_flows(
    env: Env, tmp_path: Path
) -> None:
    host = f"spool-{uuid.uuid4().hex[:8]}"
    subjects = env.settings.subjects
    spool = tmp_path / "spool"
    # A previous run left four messages; one of them was damaged since.
    left = DiskSpool(spool, max_bytes=1_000_000)
    left.open()
    reports = [
        HealthReport(host=host, plugin="left", status="ok", message=str(n)) for n in range(4)
    ]
    left.append(
        [
            Message(
                subjects.health(host, "left"), encode(r, JSON), f"{host}:left::{n}:health", JSON
            )
            for n, r in enumerate(reports)
        ]
    )
    left.close()
    damaged = spool / spool_names(spool, "*.msg")[1]
    damaged.write_bytes(b'{"subject": 3\ngarbage')

    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    await ensure_streams(js, env.settings)
    c = collector(env, env.ep, host, spool)
    await c.start()
    try:

        async def drained() -> bool:
            return len(c.outbox) == 0 and c.sender.stats.published > 0

        await wait_for(drained)
        await c.run_once(c.plugins[0])  # runs after the loss publish, and tell of it
        await wait_for(drained)
    finally:
        await c.stop(flush_timeout=5)

    assert c.outbox.dropped == 1
    assert spool_names(spool, "*.bad") == [damaged.with_suffix(".bad").name]
    assert spool_names(spool, "*.msg") == []
    got = [
        msgspec.json.decode(data, type=HealthReport)
        for data in await read_all(js, f"{env.root}.health.{host}.>")
    ]
    assert [(r.plugin, r.message) for r in got if r.plugin == "left"] == [
        ("left", "0"),
        ("left", "2"),
        ("left", "3"),
    ]
    assert [r.status for r in got if r.plugin == "small"] == ["ok"]
    told = [r for r in got if r.plugin == "unity-collector"]
    assert [(r.status, r.message) for r in told] == [
        (
            "degraded",
            "dropped 1 message(s) since the last report (spool file corrupt: 1), 1 in all",
        )
    ]
    await nc.close()


@pytest.mark.slow
async def test_a_spool_folder_removed_in_an_outage_is_made_again_and_the_loss_counted(
    env: Env, tmp_path: Path
) -> None:
    host = f"spool-{uuid.uuid4().hex[:8]}"
    spool = tmp_path / "spool"
    with private_nats("unity-spool-faults-") as server:
        ep = on_nats(env.ep, server)
        nc = await connect_nats(ep, "test-setup")
        await ensure_streams(nc.jetstream(), env.settings)
        await nc.close()
        c = collector(env, ep, host, spool)
        await c.start()
        small = c.plugins[0]
        try:

            async def drained() -> bool:
                return len(c.outbox) == 0 and c.sender.stats.published > 0

            before = await c.run_once(small)
            await wait_for(drained)

            server.stop()
            lost = [await c.run_once(small) for _ in range(3)]

            async def spooled(count: int) -> bool:
                return len(c.outbox.in_memory) == 0 and len(c.outbox) == count

            await wait_for(lambda: spooled(2 * len(lost)))  # a batch and a health report each
            shutil.rmtree(spool)
            after = await c.run_once(small)
            await wait_for(lambda: spooled(2 * len(lost) + 2))
            assert len(spool_names(spool, "*.msg")) == 2, "the spool folder was made again"

            server.start()
            await wait_for(drained, within=30)
            last = await c.run_once(small)
            await wait_for(drained)
        finally:
            await c.stop(flush_timeout=5)

        assert c.outbox.dropped == 2 * len(lost)
        nc = await connect_nats(ep, "test-check")
        js = nc.jetstream()
        subjects = env.settings.subjects
        seqs = [
            msgspec.json.decode(data, type=MetricBatch).seq
            for data in await read_all(js, subjects.metrics(host, "small"))
        ]
        # Some of the lost runs may have gone out before the client saw the server go; the
        # runs around the loss all arrive, once each, in order.
        kept = [before.seq, after.seq, last.seq]
        assert [s for s in seqs if s in kept] == kept
        assert seqs == sorted(set(seqs))
        health = [
            msgspec.json.decode(data, type=HealthReport)
            for data in await read_all(js, subjects.health(host, "unity-collector"))
        ]
        assert [h.message for h in health] == [
            "dropped 6 message(s) since the last report (spool file missing: 6), 6 in all"
        ]
        await nc.close()


class Flaky(Outbox):
    """An outbox whose first reads fail in a way nobody planned for."""

    def __init__(self) -> None:
        super().__init__(max_messages=100)
        self.failures = 2

    async def window(self, limit: int) -> list[Message]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("unplanned")
        return await super().window(limit)


async def test_the_sender_outlives_an_unexpected_error_and_goes_on(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="unity.collectors.runtime.sender")
    nc = await connect_nats(env.ep, "test")
    try:
        js = nc.jetstream()
        await ensure_streams(js, env.settings)
        host = f"flaky-{uuid.uuid4().hex[:8]}"
        subject = env.settings.subjects.health(host, "flaky")
        outbox = Flaky()
        sender = Sender(outbox, lambda: js, lambda: nc.is_connected, ack_timeout=5)
        sender.start()
        report = HealthReport(host=host, plugin="flaky", status="ok")
        sender.put(Message(subject, encode(report, JSON), f"{host}:flaky::1:health", JSON))

        async def sent() -> bool:
            return sender.stats.published == 1

        await wait_for(sent)
        await sender.stop(time.monotonic() + 5)
        assert outbox.failures == 0
        # Logged once for the kind, not once per failed round.
        failed = [r for r in caplog.records if "sender round failed" in r.getMessage()]
        assert len(failed) == 1 and "RuntimeError: unplanned" in failed[0].getMessage()
        assert any("sender recovered" in r.getMessage() for r in caplog.records)
        assert await read_all(js, subject) == [encode(report, JSON)]
    finally:
        await nc.close()
