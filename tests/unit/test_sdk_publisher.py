"""The SDK publisher against a real nats-server: pipelined acks, ordered buffer, backoff, resend."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from compose.connect import connect_nats
from compose.embedded import NatsServer, free_port
from compose.settings import Endpoints
from schemas import MSGPACK, HealthReport, MetricBatch, Sample, Subjects, decode
from sdk import Publisher
from tests.conftest import Env


def batch(seq: int, host: str = "h1") -> MetricBatch:
    return MetricBatch(host=host, plugin="ups", seq=seq, samples=[Sample("x", float(seq))])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def add_stream(js: JetStreamContext, subjects: Subjects) -> str:
    name = subjects.metrics_stream
    await js.add_stream(
        StreamConfig(
            name=name, subjects=[f"{subjects.root}.metrics.>", f"{subjects.root}.health.>"]
        )
    )
    return name


async def stored(js: JetStreamContext, stream: str) -> list[tuple[str, str, bytes]]:
    info = await js.stream_info(stream)
    out: list[tuple[str, str, bytes]] = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        headers = msg.headers or {}
        out.append((msg.subject or "", headers.get("Nats-Msg-Id", ""), msg.data or b""))
    return out


@contextlib.asynccontextmanager
async def jetstream(env: Env) -> AsyncIterator[tuple[NATS, JetStreamContext, Subjects]]:
    nc = await connect_nats(env.ep, "publisher-test")
    try:
        yield nc, nc.jetstream(), env.settings.subjects
    finally:
        await nc.close()


async def test_batches_go_out_pipelined_in_order_with_msg_ids(env: Env) -> None:
    async with jetstream(env) as (_, js, subjects):
        stream = await add_stream(js, subjects)
        pub = Publisher(js, subjects, max_in_flight=8, content_type=MSGPACK)
        for seq in range(1, 41):
            assert await pub.publish_batch(batch(seq))
        assert await pub.publish_health(HealthReport("h1", "ups", "ok", samples=1), 40)
        assert (pub.published, pub.buffered, pub.dropped) == (41, 0, 0)
        msgs = await stored(js, stream)
    assert [m[1] for m in msgs[:3]] == ["h1:ups::1", "h1:ups::2", "h1:ups::3"]
    assert msgs[-1][:2] == (subjects.health("h1", "ups"), "h1:ups::40:health")
    assert [decode(m[2], MetricBatch, MSGPACK).seq for m in msgs[:-1]] == list(range(1, 41))


async def test_outage_keeps_a_bounded_ordered_buffer_and_backs_off(env: Env) -> None:
    clock = Clock()
    async with jetstream(env) as (_, js, subjects):
        pub = Publisher(js, subjects, max_buffered=3, backoff_min=1.0, clock=clock)
        # No stream takes the subject yet: JetStream is "unreachable" for these messages.
        assert not await pub.publish_batch(batch(1))
        assert (pub.failures, pub.buffered) == (1, 1)
        assert "NoStreamResponse" in pub.last_error
        for seq in range(2, 6):
            assert not await pub.publish_batch(batch(seq))
        # Inside the backoff nothing was attempted; the oldest two were dropped and counted.
        assert (pub.failures, pub.buffered, pub.dropped) == (1, 3, 2)
        clock.now += 1.5
        assert not await pub.publish_batch(batch(6))
        assert (pub.failures, pub.dropped) == (2, 3)
        stream = await add_stream(js, subjects)
        assert not await pub.publish_batch(batch(7))  # still backing off (2 s now)
        assert (pub.failures, pub.dropped) == (2, 4)
        clock.now += 2.5
        assert await pub.publish_batch(batch(8))
        assert (pub.buffered, pub.published, pub.dropped) == (0, 3, 5)
        ids = [m[1] for m in await stored(js, stream)]
    assert ids == ["h1:ups::6", "h1:ups::7", "h1:ups::8"]


async def test_a_resent_window_is_stored_once(env: Env) -> None:
    async with jetstream(env) as (_, js, subjects):
        stream = await add_stream(js, subjects)
        first = Publisher(js, subjects)
        second = Publisher(js, subjects)
        for seq in (1, 2, 3):
            assert await first.publish_batch(batch(seq))
        # A producer that lost its acks sends the same batches again: Msg-Ids deduplicate.
        for seq in (1, 2, 3, 4):
            assert await second.publish_batch(batch(seq))
        ids = [m[1] for m in await stored(js, stream)]
    assert ids == ["h1:ups::1", "h1:ups::2", "h1:ups::3", "h1:ups::4"]


def test_constructor_validates_without_io() -> None:
    subjects = Subjects("x")
    with pytest.raises(ValueError, match="content type"):
        Publisher(None, subjects, content_type="text/plain")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        Publisher(None, subjects, max_in_flight=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backoff_min"):
        Publisher(None, subjects, backoff_min=5, backoff_max=1)  # type: ignore[arg-type]


async def _until(predicate: Callable[[], bool], within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_nats_restart_buffers_then_flushes_on_reconnect_in_order() -> None:
    data = Path(tempfile.mkdtemp(prefix="unity-pub-"))
    server = NatsServer(data, free_port(), "unity", uuid.uuid4().hex)
    await asyncio.to_thread(server.start)
    ep = Endpoints(
        f"nats://127.0.0.1:{server.port}", server.user, server.password, "", None, "", None
    )
    subjects = Subjects(f"t{uuid.uuid4().hex[:8]}")
    reconnected: list[bool] = []
    pub: Publisher | None = None

    async def on_reconnect() -> None:
        reconnected.append(True)
        assert pub is not None
        await pub.on_reconnect()

    nc = await connect_nats(ep, "restart-test", reconnected_cb=on_reconnect)
    try:
        js = nc.jetstream()
        stream = await add_stream(js, subjects)
        pub = Publisher(js, subjects, ack_timeout=0.5, backoff_min=60.0, backoff_max=60.0)
        assert await pub.publish_batch(batch(1))
        await asyncio.to_thread(server.stop)
        for seq in (2, 3, 4):
            await pub.publish_batch(batch(seq))
        assert pub.buffered == 3 and pub.failures == 1  # one attempt, then the long backoff
        await asyncio.to_thread(server.start)
        await _until(lambda: bool(reconnected) and pub is not None and pub.buffered == 0)
        ids = [m[1] for m in await stored(js, stream)]
        assert ids == ["h1:ups::1", "h1:ups::2", "h1:ups::3", "h1:ups::4"]
        assert pub.dropped == 0
    finally:
        await nc.close()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(data, ignore_errors=True)
