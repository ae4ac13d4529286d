"""The SDK publisher against a real nats-server: pipelined acks, ordered buffer, backoff, resend."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.api import PubAck, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

from tests.servers import Env
from unity.compose.embedded import NatsServer, free_port
from unity.schemas import (
    MAX_PAYLOAD_BYTES,
    MSGPACK,
    HealthReport,
    MetricBatch,
    Sample,
    Subjects,
    decode,
    encode,
)
from unity.sdk import Publisher
from unity.sdk.connection import connect_nats
from unity.sdk.publisher import permanent
from unity.sdk.settings import Endpoints


def batch(seq: int, host: str = "h1") -> MetricBatch:
    return MetricBatch(host=host, plugin="ups", seq=seq, samples=[Sample("x", float(seq))])


def padded(seq: int, samples: int) -> MetricBatch:
    """A batch of about ``samples`` x 230 bytes."""
    pad = {"pad": "p" * 200}
    return MetricBatch("h1", "ups", [Sample(f"x{i}", 1.0, pad) for i in range(samples)], seq=seq)


def oversized(seq: int) -> MetricBatch:
    """A batch whose JSON is over the contract's payload limit, but under nats' 1 MiB."""
    big = MetricBatch("h1", "ups", [Sample("x", 1.0, {"pad": "p" * 250})] * 3500, seq=seq)
    assert MAX_PAYLOAD_BYTES < len(encode(big)) < 1024 * 1024
    return big


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def add_stream(js: JetStreamContext, subjects: Subjects, max_msg_size: int = -1) -> str:
    name = subjects.metrics_stream
    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=[f"{subjects.root}.metrics.>", f"{subjects.root}.health.>"],
            max_msg_size=max_msg_size,
        )
    )
    return name


class CountingJetStream(JetStreamContext):
    """The real JetStream context, counting the publishes whose PubAck is still outstanding."""

    def __init__(self, nc: NATS) -> None:
        super().__init__(nc)
        self.sent = 0
        self.unacked = 0
        self.peak = 0

    async def publish_async(self, *args: Any, **kwargs: Any) -> asyncio.Future[PubAck]:
        future = await super().publish_async(*args, **kwargs)
        self.sent += 1
        self.unacked += 1
        self.peak = max(self.peak, self.unacked)
        future.add_done_callback(self._settled)
        return future

    def _settled(self, _: asyncio.Future[PubAck]) -> None:
        self.unacked -= 1


def refusals(caplog: pytest.LogCaptureFixture, mid: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "unity.sdk.publisher" and f"dropped message {mid} " in r.getMessage()
    ]


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


async def test_no_more_than_max_in_flight_publishes_wait_for_their_acks(env: Env) -> None:
    clock = Clock()
    async with jetstream(env) as (nc, _, subjects):
        js = CountingJetStream(nc)
        pub = Publisher(js, subjects, max_in_flight=8, clock=clock)
        assert not await pub.publish_batch(batch(1))  # no stream yet: buffered, backing off
        for seq in range(2, 41):
            assert not await pub.publish_batch(batch(seq))
        stream = await add_stream(js, subjects)
        assert await pub.flush()
        ids = [m[1] for m in await stored(js, stream)]
    assert 1 < js.peak <= 8  # pipelined, and never more than the bound
    assert (js.sent, js.unacked, pub.published) == (41, 0, 40)
    assert ids == [f"h1:ups::{seq}" for seq in range(1, 41)]


async def test_a_message_over_the_payload_limit_is_refused_before_it_is_queued(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "unity.sdk.publisher")
    async with jetstream(env) as (_, js, subjects):
        stream = await add_stream(js, subjects)
        pub = Publisher(js, subjects, max_buffered=2)
        assert await pub.publish_batch(batch(1))
        assert not await pub.publish_batch(oversized(2))
        assert (pub.buffered, pub.dropped, pub.refused, pub.failures) == (0, 1, 1, 0)
        assert "h1:ups::2" in pub.last_refusal and str(MAX_PAYLOAD_BYTES) in pub.last_refusal
        assert await pub.publish_batch(batch(3))
        ids = [m[1] for m in await stored(js, stream)]
    assert ids == ["h1:ups::1", "h1:ups::3"]
    assert len(refusals(caplog, "h1:ups::2")) == 1


async def test_a_message_the_stream_refuses_for_good_is_dropped_not_retried(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "unity.sdk.publisher")
    clock = Clock()
    async with jetstream(env) as (_, js, subjects):
        pub = Publisher(js, subjects, ack_timeout=1.0, clock=clock)
        # Queued while there is no stream (a transient failure), so that all three go out in
        # one pipelined window once there is one: the refused one sits between two good ones.
        for item in (batch(1), padded(2, 20), batch(3)):
            assert not await pub.publish_batch(item)
        assert pub.failures == 1 and "NoStreamResponse" in pub.last_error
        stream = await add_stream(js, subjects, max_msg_size=2000)
        assert len(encode(padded(2, 20))) > 2000
        assert await pub.flush()
        assert (pub.buffered, pub.published, pub.dropped, pub.refused) == (0, 2, 1, 1)
        assert "message size exceeds maximum" in pub.last_refusal
        assert await pub.publish_batch(batch(4))  # nothing left blocking the head
        ids = [m[1] for m in await stored(js, stream)]
    assert ids == ["h1:ups::1", "h1:ups::3", "h1:ups::4"]
    assert pub.failures == 1
    assert len(refusals(caplog, "h1:ups::2")) == 1


class SmallPayloadNats(NatsServer):
    """A nats-server whose max_payload is below the contract's limit."""

    max_payload = 4096

    def prepare(self) -> None:
        super().prepare()
        with self.conf.open("a") as conf:
            conf.write(f"max_payload: {self.max_payload}\n")


@pytest.fixture
def small_payload_nats() -> Iterator[Endpoints]:
    data = Path(tempfile.mkdtemp(prefix="unity-pub-"))
    server = SmallPayloadNats(data, free_port(), "unity", uuid.uuid4().hex)
    server.start()
    try:
        yield Endpoints(
            f"nats://127.0.0.1:{server.port}", server.user, server.password, "", None, "", None
        )
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


async def test_a_message_over_the_servers_max_payload_is_dropped(
    small_payload_nats: Endpoints, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "unity.sdk.publisher")
    subjects = Subjects("t" + uuid.uuid4().hex[:8])
    nc = await connect_nats(small_payload_nats, "max-payload-test")
    try:
        js = nc.jetstream()
        stream = await add_stream(js, subjects)
        big = padded(2, 30)
        assert SmallPayloadNats.max_payload < len(encode(big)) < MAX_PAYLOAD_BYTES
        # Told the server's limit, the publisher refuses before sending, headers counted.
        told = Publisher(js, subjects, max_payload=nc.max_payload)
        assert await told.publish_batch(batch(1))
        assert not await told.publish_batch(big)
        near = MetricBatch("h1", "ups", [Sample("x", 1.0, {"pad": ""})], seq=3)
        room = SmallPayloadNats.max_payload - len(encode(near))
        near = MetricBatch("h1", "ups", [Sample("x", 1.0, {"pad": "p" * room})], seq=3)
        assert len(encode(near)) == nc.max_payload  # fits, but not with its headers
        assert not await told.publish_batch(near)
        assert (told.buffered, told.dropped, told.refused, told.failures) == (0, 2, 2, 0)
        assert "the server takes 4096" in told.last_refusal
        assert js.publish_async_pending() == 0
        # Not told, it learns from nats' MaxPayloadError, and the head is not blocked either.
        untold = Publisher(js, subjects)
        assert not await untold.publish_batch(padded(4, 30))
        assert (untold.buffered, untold.dropped, untold.refused, untold.failures) == (0, 1, 1, 0)
        assert "MaxPayloadError" in untold.last_refusal
        assert await untold.publish_batch(batch(5))
        ids = [m[1] for m in await stored(js, stream)]
    finally:
        await nc.close()
    assert ids == ["h1:ups::1", "h1:ups::5"]
    assert [len(refusals(caplog, f"h1:ups::{seq}")) for seq in (2, 3, 4)] == [1, 1, 1]


def test_only_errors_about_the_message_itself_are_permanent() -> None:
    assert permanent(MaxPayloadError())
    assert permanent(APIError(code=400, err_code=10054, description="message size exceeds"))
    assert permanent(APIError(code=400, err_code=10097, description="header size exceeds"))
    # The stream may be created, unsealed or given room later: these are retried.
    assert not permanent(NoStreamResponseError())
    assert not permanent(APIError(code=400, err_code=10109, description="sealed stream"))
    assert not permanent(ServiceUnavailableError(code=503, err_code=10077))
    assert not permanent(TimeoutError())


async def test_drop_buffered_counts_what_is_given_up(env: Env) -> None:
    async with jetstream(env) as (_, js, subjects):
        pub = Publisher(js, subjects)
        for seq in (1, 2, 3):
            assert not await pub.publish_batch(batch(seq))  # no stream
        assert await pub.drop_buffered() == 3
        assert (pub.buffered, pub.dropped, pub.refused) == (0, 3, 0)


def test_constructor_validates_without_io() -> None:
    subjects = Subjects("x")
    with pytest.raises(ValueError, match="content type"):
        Publisher(None, subjects, content_type="text/plain")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        Publisher(None, subjects, max_in_flight=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backoff_min"):
        Publisher(None, subjects, backoff_min=5, backoff_max=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_payload"):
        Publisher(None, subjects, max_payload=0)  # type: ignore[arg-type]


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
