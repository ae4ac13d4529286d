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
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import APIError
from nats.js.errors import Error as JetStreamError

from unity.schemas import (
    JSON,
    MAX_PAYLOAD_BYTES,
    MSGPACK,
    Event,
    HealthReport,
    MetricBatch,
    Subjects,
    encode,
)

__all__ = ["Pending", "Publisher", "event_msg_id", "health_msg_id", "msg_id", "permanent"]

log = logging.getLogger(__name__)

_FAILURES = (NatsError, JetStreamError, TimeoutError, OSError)

# JetStream error codes that are about the message itself: sending the same bytes again gets
# the same answer. Everything else (no stream yet, a sealed or full stream, no quorum) may pass
# once an operator or the server fixes it, so it is retried and the bounded buffer decides.
_PERMANENT_CODES = frozenset(
    {
        10054,  # JSStreamMessageExceedsMaximumErr: over the stream's max_msg_size
        10097,  # JSStreamHeaderExceedsMaximumErr: headers over 64 KiB
    }
)


def permanent(error: BaseException) -> bool:
    """True when NATS refused a message for good: over the server's ``max_payload`` or the
    stream's message size. Resending it would block everything queued behind it."""
    if isinstance(error, MaxPayloadError):
        return True
    return isinstance(error, APIError) and error.err_code in _PERMANENT_CODES


@dataclass(frozen=True, slots=True)
class Pending:
    """One encoded message waiting for its PubAck (``on_ack`` runs once it is stored)."""

    subject: str
    payload: bytes
    msg_id: str
    content_type: str
    on_ack: Callable[[], None] | None = None

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Nats-Msg-Id": self.msg_id}
        if self.content_type == MSGPACK:
            headers["Content-Type"] = MSGPACK
        return headers

    @property
    def wire_size(self) -> int:
        """Payload and headers as the server counts them against its ``max_payload``."""
        header_lines = sum(len(f"{k}: {v}\r\n".encode()) for k, v in self.headers.items())
        return len(self.payload) + len(b"NATS/1.0\r\n\r\n") + header_lines


def msg_id(host: str, plugin: str, instance: str, seq: int) -> str:
    """The ``Nats-Msg-Id`` of a batch: ``host:plugin:instance:seq``."""
    return f"{host}:{plugin}:{instance}:{seq}"


def health_msg_id(base: str) -> str:
    """The ``Nats-Msg-Id`` of a run's health report: the batch's (``msg_id``) + ``:health``."""
    return f"{base}:health"


def event_msg_id(base: str, index: int) -> str:
    """The ``Nats-Msg-Id`` of a run's ``index``-th event: the batch's + ``:event:<index>``."""
    return f"{base}:event:{index}"


class Publisher:
    """Publishes batches, health reports and events; keeps what NATS could not take, up to a bound.

    Messages go out in order, up to ``max_in_flight`` at a time, each waiting for its PubAck. A
    message is removed from the buffer only once it and everything before it were acknowledged;
    what follows a failure is sent again later, and JetStream's duplicate window (keyed by the
    ``Nats-Msg-Id``) turns a resend of a stored message into a no-op.

    While NATS is unreachable, messages wait in a buffer of ``max_buffered``; past that the oldest
    are dropped and counted in ``dropped``. After a failure, attempts back off exponentially from
    ``backoff_min`` to ``backoff_max`` seconds; ``flush()`` and ``on_reconnect()`` try at once.

    A message NATS can never take is not retried: one over ``MAX_PAYLOAD_BYTES`` or
    ``max_payload`` is refused before it is queued, one the server refuses for good (see
    :func:`permanent`) leaves the buffer. Both are counted in ``dropped`` and ``refused`` and
    logged once, with the reason in ``last_refusal``.

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
        max_payload: The server's limit, headers included (the client's ``max_payload``).
            Without it a message over a server limit below ``MAX_PAYLOAD_BYTES`` is only
            refused when nats-py raises ``MaxPayloadError``, which leaves one of its pending
            publish slots taken for good.
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
        max_payload: int | None = None,
    ) -> None:
        if content_type not in (JSON, MSGPACK):
            raise ValueError(f"unsupported content type {content_type!r}")
        if max_buffered < 1 or max_in_flight < 1:
            raise ValueError("max_buffered and max_in_flight must be at least 1")
        if not 0 < backoff_min <= backoff_max:
            raise ValueError("backoff_min must be positive and at most backoff_max")
        if max_payload is not None and max_payload < 1:
            raise ValueError("max_payload must be at least 1")
        self._js = js
        self._subjects = subjects
        self._content_type = content_type
        self._max_in_flight = max_in_flight
        self._ack_timeout = ack_timeout
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._clock = clock
        self._max_payload = max_payload
        self._buffer: collections.deque[Pending] = collections.deque(maxlen=max_buffered)
        self._lock = asyncio.Lock()
        self._backoff = 0.0
        self._next_attempt = 0.0
        self.dropped = 0
        self.refused = 0
        self.published = 0
        self.failures = 0
        self.last_error = ""
        self.last_refusal = ""

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

    async def publish_health(
        self, report: HealthReport, seq: int, on_ack: Callable[[], None] | None = None
    ) -> bool:
        """Queue the health report of run ``seq`` and try to send; True when all went out.

        ``on_ack`` is called when the report is stored, now or on a later flush; never when it
        is dropped.
        """
        return await self._send(
            self._subjects.health(report.host, report.plugin),
            encode(report, self._content_type),
            health_msg_id(msg_id(report.host, report.plugin, report.instance, seq)),
            on_ack,
        )

    async def publish_event(self, event: Event, seq: int, index: int | None = None) -> bool:
        """Queue an event and try to send; True when all went out.

        ``index`` given: the ``index``-th event of run ``seq`` (Msg-Id ``<batch id>:event:<index>``,
        as the collector and ``Standalone`` publish them); else ``seq`` alone is unique per
        producer (``<host>:<plugin>:<instance>:<seq>:event``).
        """
        base = msg_id(event.host, event.plugin, event.instance, seq)
        return await self._send(
            self._subjects.events(event.host, event.plugin),
            encode(event, self._content_type),
            f"{base}:event" if index is None else event_msg_id(base, index),
        )

    async def flush(self) -> bool:
        """Send everything buffered now, ignoring the backoff; True when the buffer is empty
        (some of it may have been refused: see ``refused``)."""
        async with self._lock:
            return await self._flush()

    async def on_reconnect(self) -> None:
        """Forget the backoff and flush; pass it as (part of) nats' ``reconnected_cb``."""
        self._backoff = 0.0
        self._next_attempt = 0.0
        await self.flush()

    async def drop_buffered(self) -> int:
        """Give up on everything still buffered (at shutdown); count it in ``dropped``."""
        async with self._lock:
            count = len(self._buffer)
            self._buffer.clear()
            self.dropped += count
            return count

    async def _send(
        self, subject: str, payload: bytes, mid: str, on_ack: Callable[[], None] | None = None
    ) -> bool:
        async with self._lock:
            item = Pending(subject, payload, mid, self._content_type, on_ack)
            if len(payload) > MAX_PAYLOAD_BYTES:
                self._refuse(item, f"{len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}")
                return False
            if self._max_payload is not None and item.wire_size > self._max_payload:
                why = f"{item.wire_size} bytes with headers, the server takes {self._max_payload}"
                self._refuse(item, why)
                return False
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1
            self._buffer.append(item)
            if self._clock() < self._next_attempt:
                return False
            refused = self.refused
            return await self._flush() and self.refused == refused

    async def _flush(self) -> bool:
        while self._buffer:
            window = list(itertools.islice(self._buffer, self._max_in_flight))
            acked, error = await self._publish_window(window)
            for _ in range(acked):
                self._stored()
            if error is None:
                continue
            head = self._buffer[0]
            if isinstance(error, TimeoutError):
                # nats-py's async reply handler raises on a JetStream error reply instead of
                # failing the future, so a refusal looks like a lost PubAck. A plain request
                # learns which it was (and stores the message if the server is back).
                error = await self._probe(head)
                if error is None:
                    self._stored()
                    continue
            if permanent(error):
                self._buffer.popleft()
                self._refuse(head, f"{type(error).__name__}: {error}")
                continue
            self._failed(head, error)
            return False
        self._backoff = 0.0
        self._next_attempt = 0.0
        return True

    def _stored(self) -> None:
        item = self._buffer.popleft()
        self.published += 1
        if item.on_ack is not None:
            item.on_ack()

    async def _publish_window(self, window: list[Pending]) -> tuple[int, BaseException | None]:
        """Publish ``window`` pipelined; return how many in a row were acked, and the error of
        the one after them (``window[acked]``)."""
        futures: list[asyncio.Future[Any]] = []
        publish_error: BaseException | None = None
        for item in window:
            try:
                futures.append(
                    await self._js.publish_async(item.subject, item.payload, headers=item.headers)
                )
            except _FAILURES as exc:
                publish_error = exc
                break
        acked = 0
        error: BaseException | None = None
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
        return acked, error if error is not None else publish_error

    async def _probe(self, item: Pending) -> BaseException | None:
        """Publish one message and wait for its PubAck; None when it is stored."""
        try:
            await self._js.publish(
                item.subject, item.payload, timeout=self._ack_timeout, headers=item.headers
            )
        except _FAILURES as exc:
            return exc
        return None

    def _refuse(self, item: Pending, why: str) -> None:
        self.dropped += 1
        self.refused += 1
        self.last_refusal = f"{item.msg_id} to {item.subject}: {why}"
        log.warning("dropped message %s, NATS will never take it", self.last_refusal)

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
