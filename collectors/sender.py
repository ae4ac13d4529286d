"""The task that moves the outbox to JetStream in order; each leaves once all up to it are acked.

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
from typing import Any

from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError

from collectors.spool import Message, Outbox, SpoolError
from schemas import MSGPACK

log = logging.getLogger(__name__)

_RETRY_S = 0.25
# Messages published before waiting for their acks; a tick of every plugin is about twenty.
_WINDOW = 64
_GATHER_S = 0.02


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
            # The runs of one tick end within milliseconds of each other: waiting a moment
            # sends their messages in one write and reads their acks in one wake-up.
            await asyncio.sleep(_GATHER_S)
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
        while window := self.outbox.window(_WINDOW):
            if deadline is not None and time.monotonic() > deadline:
                return False
            js = self._js()
            if js is None or not self._connected():
                self.outbox.spill()
                return False
            started = time.monotonic()
            acked, error = await self._publish_window(js, window)
            latency = time.monotonic() - started
            for message in window[:acked]:
                self.outbox.pop(message)
            self.stats.published += acked
            self.stats.latency_sum += latency * acked
            self.stats.latency_count += acked
            if acked:
                self.stats.latency_max = max(self.stats.latency_max, latency)
            if error is None:
                continue
            failed = window[acked]
            if isinstance(error, MaxPayloadError):
                # No retry can ever send it, and it would hold up everything behind it.
                log.error(
                    "message %s (%d bytes) is over the server's max_payload: dropped",
                    failed.msg_id,
                    len(failed.payload),
                )
                self.outbox.pop(failed)
                self.outbox.dropped += 1
                continue
            self.stats.failures += 1
            log.warning(
                "publish to %s failed (%s); %d message(s) waiting",
                failed.subject,
                type(error).__name__,
                len(self.outbox),
            )
            self.outbox.spill()
            return False
        return True

    async def _publish_window(
        self, js: JetStreamContext, window: list[Message]
    ) -> tuple[int, BaseException | None]:
        """Publish ``window`` pipelined; how many in a row were acked, and what stopped the rest.

        The messages go out in one write and their acks come back together: one round trip
        for the batch, health report and events of a run instead of one each. A message
        removed only once it and all before it are acked keeps the order; a resend of one
        that was stored after all is a no-op under the stream's duplicate window (Msg-Id).
        """
        futures: list[asyncio.Future[Any]] = []
        error: BaseException | None = None
        for message in window:
            try:
                futures.append(
                    await js.publish_async(
                        message.subject, message.payload, headers=_headers(message)
                    )
                )
            except (NatsError, JetStreamError, OSError) as exc:
                error = exc
                break
        acked = 0
        ack_deadline = time.monotonic() + self._ack_timeout
        for future in futures:
            if error is not None:
                future.cancel()
                continue
            try:
                await asyncio.wait_for(future, max(0.0, ack_deadline - time.monotonic()))
            except (NatsError, JetStreamError, TimeoutError, OSError) as exc:
                error = exc
            else:
                acked += 1
        return acked, error


def _headers(message: Message) -> dict[str, str]:
    headers = {"Nats-Msg-Id": message.msg_id}
    if message.content_type == MSGPACK:
        headers["Content-Type"] = MSGPACK
    return headers
