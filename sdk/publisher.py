"""JetStream publisher: Msg-Id for deduplication, PubAck awaited, bounded buffer on outage."""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError

from schemas import JSON, MSGPACK, HealthReport, MetricBatch, Subjects, encode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    subject: str
    payload: bytes
    msg_id: str
    content_type: str


class Publisher:
    """Publishes batches and health reports; keeps what NATS could not take, up to a bound.

    Messages are sent in order. While NATS is unreachable they wait in a buffer of
    ``max_buffered`` messages; past that the oldest are dropped and counted in ``dropped``.
    """

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        *,
        content_type: str = JSON,
        max_buffered: int = 10_000,
        ack_timeout: float = 5.0,
    ) -> None:
        if content_type not in (JSON, MSGPACK):
            raise ValueError(f"unsupported content type {content_type!r}")
        self._js = js
        self._subjects = subjects
        self._content_type = content_type
        self._ack_timeout = ack_timeout
        self._buffer: collections.deque[Pending] = collections.deque(maxlen=max_buffered)
        self._lock = asyncio.Lock()
        self.dropped = 0
        self.published = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def publish_batch(self, batch: MetricBatch) -> bool:
        msg_id = f"{batch.host}:{batch.plugin}:{batch.instance}:{batch.seq}"
        subject = self._subjects.metrics(batch.host, batch.plugin)
        return await self._send(
            Pending(subject, encode(batch, self._content_type), msg_id, self._content_type)
        )

    async def publish_health(self, report: HealthReport, seq: int) -> bool:
        msg_id = f"{report.host}:{report.plugin}:{report.instance}:{seq}:health"
        subject = self._subjects.health(report.host, report.plugin)
        return await self._send(
            Pending(subject, encode(report, self._content_type), msg_id, self._content_type)
        )

    async def _send(self, item: Pending) -> bool:
        """Queue ``item`` behind anything buffered and flush; True when all went out."""
        async with self._lock:
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1
            self._buffer.append(item)
            return await self._flush()

    async def flush(self) -> bool:
        async with self._lock:
            return await self._flush()

    async def _flush(self) -> bool:
        while self._buffer:
            item = self._buffer[0]
            headers = {"Nats-Msg-Id": item.msg_id}
            if item.content_type == MSGPACK:
                headers["Content-Type"] = MSGPACK
            try:
                await self._js.publish(
                    item.subject, item.payload, timeout=self._ack_timeout, headers=headers
                )
            except (NatsError, JetStreamError, TimeoutError, OSError) as exc:
                log.warning(
                    "publish to %s failed (%s); %d message(s) buffered",
                    item.subject,
                    type(exc).__name__,
                    len(self._buffer),
                )
                return False
            self._buffer.popleft()
            self.published += 1
        return True
