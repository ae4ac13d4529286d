"""The task that moves the outbox to JetStream, oldest first, each message acked before the next.

Publishing never blocks a plugin: runs append to the outbox and return. While NATS is away the
sender waits for the connection (it never stacks copies of a message in nats-py's reconnect
buffer) and the outbox spills to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError

from collectors.spool import Message, Outbox, SpoolError
from schemas import MSGPACK

log = logging.getLogger(__name__)

_RETRY_S = 0.25


@dataclass(slots=True)
class SendStats:
    published: int = 0
    failures: int = 0
    latency_sum: float = 0.0
    latency_count: int = 0
    latency_max: float = 0.0

    def take_latency(self) -> tuple[float, float]:
        """Mean and max publish latency since the last call, in seconds."""
        mean = self.latency_sum / self.latency_count if self.latency_count else 0.0
        peak = self.latency_max
        self.latency_sum, self.latency_count, self.latency_max = 0.0, 0, 0.0
        return mean, peak


class Sender:
    def __init__(
        self,
        outbox: Outbox,
        js: Callable[[], JetStreamContext | None],
        connected: Callable[[], bool],
        *,
        ack_timeout: float,
    ) -> None:
        self.outbox = outbox
        self._js = js
        self._connected = connected
        self._ack_timeout = ack_timeout
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.stats = SendStats()
        self._task: asyncio.Task[None] | None = None

    def put(self, message: Message) -> None:
        try:
            self.outbox.append(message)
        except SpoolError as exc:
            # A full or broken disk must not stop collection: count the message as dropped.
            self.outbox.dropped += 1
            log.error("message %s dropped: %s", message.msg_id, exc)
        self._wake.set()

    def notify(self) -> None:
        """Something changed (connected, stopping): look at the outbox again."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="unity-collector-sender")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            sent = await self.send_pending()
            if self._stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if sent else _RETRY_S)

    async def stop(self, deadline: float) -> None:
        """Send what NATS takes before ``deadline`` (monotonic); keep the rest on disk."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        # NATS may be reconnecting (or still connecting): give it until the deadline.
        while len(self.outbox) and not await self.send_pending(deadline):
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(_RETRY_S)
        self.outbox.spill()
        if len(self.outbox):
            where = "kept in the disk spool" if self.outbox.on_disk else "lost (no disk spool)"
            log.warning("stopping with %d unsent message(s): %s", len(self.outbox), where)

    async def send_pending(self, deadline: float | None = None) -> bool:
        """Publish in order until the outbox is empty (True) or a publish fails (False)."""
        while (message := self.outbox.head()) is not None:
            if deadline is not None and time.monotonic() > deadline:
                return False
            js = self._js()
            if js is None or not self._connected():
                self.outbox.spill()
                return False
            started = time.monotonic()
            try:
                await js.publish(
                    message.subject,
                    message.payload,
                    timeout=self._ack_timeout,
                    headers=_headers(message),
                )
            except MaxPayloadError:
                # No retry can ever send it, and it would hold up everything behind it.
                log.error(
                    "message %s (%d bytes) is over the server's max_payload: dropped",
                    message.msg_id,
                    len(message.payload),
                )
                self.outbox.pop(message)
                self.outbox.dropped += 1
                continue
            except (NatsError, JetStreamError, TimeoutError, OSError) as exc:
                self.stats.failures += 1
                log.warning(
                    "publish to %s failed (%s); %d message(s) waiting",
                    message.subject,
                    type(exc).__name__,
                    len(self.outbox),
                )
                self.outbox.spill()
                return False
            latency = time.monotonic() - started
            self.stats.published += 1
            self.stats.latency_sum += latency
            self.stats.latency_count += 1
            self.stats.latency_max = max(self.stats.latency_max, latency)
            self.outbox.pop(message)
        return True


def _headers(message: Message) -> dict[str, str]:
    headers = {"Nats-Msg-Id": message.msg_id}
    if message.content_type == MSGPACK:
        headers["Content-Type"] = MSGPACK
    return headers
