"""JetStream publisher: Msg-Id for deduplication, pipelined PubAcks, bounded buffer on outage."""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError

from schemas import JSON, MSGPACK, Event, HealthReport, MetricBatch, Subjects, encode

__all__ = ["Pending", "Publisher", "msg_id"]

log = logging.getLogger(__name__)

_FAILURES = (NatsError, JetStreamError, TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class Pending:
    """One encoded message waiting for its PubAck."""

    subject: str
    payload: bytes
    msg_id: str
    content_type: str

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Nats-Msg-Id": self.msg_id}
        if self.content_type == MSGPACK:
            headers["Content-Type"] = MSGPACK
        return headers


def msg_id(host: str, plugin: str, instance: str, seq: int) -> str:
    """The ``Nats-Msg-Id`` of a batch: ``host:plugin:instance:seq``."""
    return f"{host}:{plugin}:{instance}:{seq}"


class Publisher:
    """Publishes batches, health reports and events; keeps what NATS could not take, up to a bound.

    Messages go out in order, up to ``max_in_flight`` at a time, each waiting for its PubAck. A
    message is removed from the buffer only once it and everything before it were acknowledged;
    what follows a failure is sent again later, and JetStream's duplicate window (keyed by the
    ``Nats-Msg-Id``) turns a resend of a stored message into a no-op.

    While NATS is unreachable, messages wait in a buffer of ``max_buffered``; past that the oldest
    are dropped and counted in ``dropped``. After a failure, attempts back off exponentially from
    ``backoff_min`` to ``backoff_max`` seconds; ``flush()`` and ``on_reconnect()`` try at once.

    Args:
        js: The JetStream context.
        subjects: Subject names under the deployment's root.
        content_type: ``JSON`` (default) or ``MSGPACK``.
        max_buffered: Messages kept while NATS cannot take them.
        max_in_flight: Messages published before waiting for their PubAcks.
        ack_timeout: Seconds to wait for one PubAck.
        backoff_min: First wait after a failure, in seconds.
        backoff_max: Longest wait between attempts, in seconds.
        clock: Monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        *,
        content_type: str = JSON,
        max_buffered: int = 10_000,
        max_in_flight: int = 256,
        ack_timeout: float = 5.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if content_type not in (JSON, MSGPACK):
            raise ValueError(f"unsupported content type {content_type!r}")
        if max_buffered < 1 or max_in_flight < 1:
            raise ValueError("max_buffered and max_in_flight must be at least 1")
        if not 0 < backoff_min <= backoff_max:
            raise ValueError("backoff_min must be positive and at most backoff_max")
        self._js = js
        self._subjects = subjects
        self._content_type = content_type
        self._max_in_flight = max_in_flight
        self._ack_timeout = ack_timeout
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._clock = clock
        self._buffer: collections.deque[Pending] = collections.deque(maxlen=max_buffered)
        self._lock = asyncio.Lock()
        self._backoff = 0.0
        self._next_attempt = 0.0
        self.dropped = 0
        self.published = 0
        self.failures = 0
        self.last_error = ""

    @property
    def buffered(self) -> int:
        """Messages waiting for NATS."""
        return len(self._buffer)

    async def publish_batch(self, batch: MetricBatch) -> bool:
        """Queue ``batch`` behind anything buffered and try to send; True when all went out."""
        return await self._send(
            self._subjects.metrics(batch.host, batch.plugin),
            encode(batch, self._content_type),
            msg_id(batch.host, batch.plugin, batch.instance, batch.seq),
        )

    async def publish_health(self, report: HealthReport, seq: int) -> bool:
        """Queue the health report of run ``seq`` and try to send; True when all went out."""
        return await self._send(
            self._subjects.health(report.host, report.plugin),
            encode(report, self._content_type),
            msg_id(report.host, report.plugin, report.instance, seq) + ":health",
        )

    async def publish_event(self, event: Event, seq: int) -> bool:
        """Queue an event (``seq`` unique per producer) and try to send; True when all went out."""
        return await self._send(
            self._subjects.events(event.host, event.plugin),
            encode(event, self._content_type),
            msg_id(event.host, event.plugin, event.instance, seq) + ":event",
        )

    async def flush(self) -> bool:
        """Send everything buffered now, ignoring the backoff; True when the buffer is empty."""
        async with self._lock:
            return await self._flush()

    async def on_reconnect(self) -> None:
        """Forget the backoff and flush; pass it as (part of) nats' ``reconnected_cb``."""
        self._backoff = 0.0
        self._next_attempt = 0.0
        await self.flush()

    async def _send(self, subject: str, payload: bytes, mid: str) -> bool:
        async with self._lock:
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1
            self._buffer.append(Pending(subject, payload, mid, self._content_type))
            if self._clock() < self._next_attempt:
                return False
            return await self._flush()

    async def _flush(self) -> bool:
        while self._buffer:
            window = list(itertools.islice(self._buffer, self._max_in_flight))
            acked, error = await self._publish_window(window)
            for _ in range(acked):
                self._buffer.popleft()
            self.published += acked
            if error is not None:
                self._failed(window[acked], error)
                return False
        self._backoff = 0.0
        self._next_attempt = 0.0
        return True

    async def _publish_window(self, window: list[Pending]) -> tuple[int, BaseException | None]:
        """Publish ``window`` pipelined; return how many in a row were acked, and the error."""
        futures: list[asyncio.Future[Any]] = []
        error: BaseException | None = None
        for item in window:
            try:
                futures.append(
                    await self._js.publish_async(item.subject, item.payload, headers=item.headers)
                )
            except _FAILURES as exc:
                error = exc
                break
        acked = 0
        for future in futures:
            if error is not None:
                future.cancel()
                continue
            try:
                await asyncio.wait_for(future, self._ack_timeout)
            except _FAILURES as exc:
                error = exc
            else:
                acked += 1
        return acked, error

    def _failed(self, item: Pending, error: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(error).__name__}: {error}"
        self._backoff = min(max(self._backoff * 2, self._backoff_min), self._backoff_max)
        self._next_attempt = self._clock() + self._backoff
        log.warning(
            "publish to %s failed (%s); %d message(s) buffered, next attempt in %.1fs",
            item.subject,
            type(error).__name__,
            len(self._buffer),
            self._backoff,
        )
