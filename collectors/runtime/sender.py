"""The task that moves the outbox to JetStream in order; each leaves once all up to it are acked.

Publishing never blocks a plugin: runs append to the outbox and return. While NATS is away the
sender waits for the connection (it never stacks copies of a message in nats-py's reconnect
buffer) and the outbox spills to disk. Nothing one message or a broken disk does ends the
sender: an unexpected error is logged once per kind and the loop backs off and goes on.
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

from unity.collectors.runtime.spool import Message, Outbox
from unity.schemas import MSGPACK

log = logging.getLogger(__name__)

_RETRY_S = 0.25
# Messages published before waiting for their acks; a tick of every plugin is about twenty.
_WINDOW = 64
_GATHER_S = 0.02
_MAX_BACKOFF_S = 5.0
OVER_MAX_PAYLOAD = "over the server's max_payload"


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
        self._failing: set[str] = set()

    def put(self, message: Message) -> None:
        self.outbox.put(message)
        self._wake.set()

    def notify(self) -> None:
        """Something changed (connected, stopping): look at the outbox again."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="unity-collector-sender")

    async def _run(self) -> None:
        backoff = _RETRY_S
        while not self._stopping.is_set():
            # The runs of one tick end within milliseconds of each other: waiting a moment
            # sends their messages in one write and reads their acks in one wake-up.
            await asyncio.sleep(_GATHER_S)
            self._wake.clear()
            try:
                sent = await self.send_pending()
            except Exception as exc:  # the sender outlives anything one round does
                self._failed(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            backoff = _RETRY_S
            self._recovered()
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
        while len(self.outbox) and time.monotonic() < deadline:
            try:
                if await self.send_pending(deadline):
                    break
            except Exception as exc:  # stopping still keeps what it can
                self._failed(exc)
            await asyncio.sleep(_RETRY_S)
        try:
            await self.outbox.spill()
        except Exception as exc:  # reported below with what is left
            self._failed(exc)
        if len(self.outbox):
            where = "kept in the disk spool" if self.outbox.on_disk else "lost (no disk spool)"
            log.warning("stopping with %d unsent message(s): %s", len(self.outbox), where)

    def _failed(self, exc: Exception) -> None:
        kind = type(exc).__name__
        if kind not in self._failing:
            self._failing.add(kind)
            log.error("sender round failed, backing off: %s: %s", kind, exc, exc_info=exc)

    def _recovered(self) -> None:
        if self._failing:
            log.info("sender recovered after %s", ", ".join(sorted(self._failing)))
            self._failing.clear()

    async def send_pending(self, deadline: float | None = None) -> bool:
        """Publish in order until the outbox is empty (True) or a publish fails (False)."""
        while True:
            if self.outbox.over_bound:
                # NATS takes messages slower than they come: the overflow goes to disk.
                await self.outbox.spill()
            js = self._js()
            if js is None or not self._connected():
                await self.outbox.spill()
                return not len(self.outbox)
            window = await self.outbox.window(_WINDOW)
            if not window:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            started = time.monotonic()
            acked, error = await self._publish_window(js, window)
            latency = time.monotonic() - started
            await self.outbox.pop(window[:acked])
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
                await self.outbox.discard(failed, OVER_MAX_PAYLOAD)
                continue
            self.stats.failures += 1
            log.warning(
                "publish to %s failed (%s); %d message(s) waiting",
                failed.subject,
                type(error).__name__,
                len(self.outbox),
            )
            await self.outbox.spill()
            return False

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
