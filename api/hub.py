"""Fan-out of live metric batches to stream clients, one bounded queue each.

One ordered JetStream consumer (no acks, no state on the server beyond its lifetime) follows
``<root>.metrics.>`` from "now" for every live client; a client resuming with ``Last-Event-ID``
gets its own ordered consumer starting right after that stream sequence, deleted from the
server as soon as the client goes. At most ``MAX_RESUMING`` such consumers exist at once;
past that a resume is refused with 503 and ``Retry-After`` (a plain reconnect, without
``Last-Event-ID``, still joins the shared consumer). Delivery into a queue never waits: when
a client's queue is full its oldest event is dropped, so a stalled client costs the others
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

import msgspec
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from unity.api.errors import ApiError
from unity.api.metrics import ApiMetrics
from unity.api.selectors import Selector
from unity.schemas import DecodeError, MetricBatch, decode, epoch, token
from unity.schemas.api import StreamBatch, StreamSample

_encoder = msgspec.json.Encoder()

# Each resuming client costs one consumer on the server for as long as it stays connected.
MAX_RESUMING = 64
RESUME_RETRY_AFTER_S = 5


class StreamClient:
    def __init__(self, selector: Selector, size: int, metrics: ApiMetrics) -> None:
        self.selector = selector
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self._metrics = metrics
        self.own: JetStreamContext.PushSubscription | None = None  # a resuming client's consumer
        self.closed = False

    def offer(self, seq: int, data: bytes) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
            self._metrics.stream_dropped += 1
        self.queue.put_nowait((seq, data))
        self._metrics.stream_events += 1

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


def _at(value: datetime | float | None, fallback: datetime) -> datetime:
    return fallback if value is None else datetime.fromtimestamp(epoch(value), UTC)


def render(batch: MetricBatch, published: datetime, selector: Selector) -> bytes | None:
    """The event data for one client, or None when no sample of the batch matches."""
    ts = _at(batch.ts, published)
    host, plugin = token(batch.host), token(batch.plugin)  # the names ingest stores
    picked = [
        StreamSample(
            s.name, s.value, s.labels, s.unit, s.kind, None if s.ts is None else _at(s.ts, ts)
        )
        for s in batch.samples
        if selector.matches(_Probe(host, plugin, batch.instance, s.name, s.labels))
    ]
    if not picked:
        return None
    return _encoder.encode(StreamBatch(host, plugin, batch.instance, ts, picked))


class _Probe:
    """What a selector sees of one sample."""

    __slots__ = ("host", "instance", "labels", "name", "plugin")

    def __init__(
        self, host: str, plugin: str, instance: str, name: str, labels: dict[str, str]
    ) -> None:
        self.host = host
        self.plugin = plugin
        self.instance = instance
        self.name = name
        self.labels = labels


class Hub:
    def __init__(
        self, js: JetStreamContext, stream: str, subject: str, size: int, metrics: ApiMetrics
    ) -> None:
        if size < 1:
            raise ValueError("stream queue size must be at least 1")
        self.js = js
        self.stream = stream
        self.subject = subject
        self.size = size
        self.metrics = metrics
        self._live: set[StreamClient] = set()
        self._resuming: set[StreamClient] = set()
        self._sub: JetStreamContext.PushSubscription | None = None
        # Joining and leaving take turns, so the shared consumer exists exactly while a live
        # client does: with nobody watching, the API receives nothing.
        self._lock = asyncio.Lock()

    async def stop(self) -> None:
        for client in list(self._resuming):
            await self.close(client)
        async with self._lock:
            self._live.clear()
            await self._drop_live()

    async def available(self) -> None:
        """503 unless the metrics stream exists."""
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            raise ApiError(
                503, "stream_unavailable", f"the stream {self.stream} does not exist yet"
            ) from None

    @property
    def resuming(self) -> int:
        return len(self._resuming)

    async def open(self, selector: Selector, after: int | None) -> StreamClient:
        """A registered client; with ``after``, its events start at stream sequence after+1.
        Every client opened must be closed with ``close``, however its response ends."""
        client = StreamClient(selector, self.size, self.metrics)
        if after is None:
            async with self._lock:
                if self._sub is None:
                    self._sub = await self._subscribe(DeliverPolicy.NEW, None, self._deliver_live)
                self._live.add(client)
        else:
            if len(self._resuming) >= MAX_RESUMING:
                raise ApiError(
                    503,
                    "stream_busy",
                    f"{MAX_RESUMING} clients are already resuming; retry, or connect without"
                    " Last-Event-ID to follow live samples",
                    {"Retry-After": str(RESUME_RETRY_AFTER_S)},
                )
            # Counted before the subscription's await, so that concurrent resumes respect the cap.
            self._resuming.add(client)
            try:
                client.own = await self._subscribe(
                    DeliverPolicy.BY_START_SEQUENCE,
                    after + 1,
                    partial(self._deliver, clients=[client]),
                )
            except BaseException:
                self._resuming.discard(client)
                raise
        self.metrics.stream_clients += 1
        return client

    async def close(self, client: StreamClient) -> None:
        if client.closed:
            return
        client.closed = True
        self.metrics.stream_clients -= 1
        if client in self._resuming:
            try:
                if client.own is not None:
                    await self._delete(client.own)
            finally:
                self._resuming.discard(client)
            return
        async with self._lock:
            self._live.discard(client)
            if not self._live:
                await self._drop_live()

    async def _delete(self, sub: JetStreamContext.PushSubscription) -> None:
        """Unsubscribe, and delete the consumer now rather than when the server notices that
        nobody listens."""
        with contextlib.suppress(NatsError):  # the connection may already be closed
            await sub.unsubscribe()
        with contextlib.suppress(NatsError, JetStreamError):  # gone already, or no connection
            await self.js.delete_consumer(self.stream, sub._consumer)

    async def _drop_live(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await self._delete(sub)

    async def _deliver_live(self, msg: Msg) -> None:
        await self._deliver(msg, list(self._live))

    async def _subscribe(
        self, policy: DeliverPolicy, start: int | None, cb: Callable[[Msg], Awaitable[None]]
    ) -> JetStreamContext.PushSubscription:
        config = ConsumerConfig(deliver_policy=policy, opt_start_seq=start)
        try:
            sub: JetStreamContext.PushSubscription = await self.js.subscribe(
                self.subject,
                cb=cb,
                ordered_consumer=True,
                config=config,
            )
        except NotFoundError:
            raise ApiError(
                503, "stream_unavailable", "the metrics stream does not exist yet"
            ) from None
        return sub

    async def _deliver(self, msg: Msg, clients: list[StreamClient]) -> None:
        if not clients:
            return
        meta = msg.metadata
        try:
            batch = decode(msg.data, MetricBatch, (msg.headers or {}).get("Content-Type"))
        except DecodeError:
            return  # ingest dead-letters it; a live view just skips it
        published = meta.timestamp or datetime.now(UTC)
        for client in clients:
            data = render(batch, published, client.selector)
            if data is not None:
                client.offer(meta.sequence.stream, data)
