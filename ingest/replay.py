"""Backfill from the streams: a temporary consumer by start time feeds the idempotent writer.

Replaying what is already stored changes nothing (COPY hits a unique violation, the merge
inserts nothing new). Rejects are counted, not dead-lettered again (the live pass did that), and
Valkey is left alone (its values are newer than anything replayed).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from unity.ingest.pipeline import Pipeline, Stats
from unity.ingest.streams import replay_config, stream_for
from unity.sdk.settings import Settings


class ReplayError(ValueError):
    """A replay request is invalid (bad range or a subject outside the ingest streams)."""


@dataclass(slots=True)
class Progress:
    total: int
    done: int = 0
    started: float = 0.0
    finished: float = 0.0

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        left = max(self.total - self.done, 0)
        return left / self.rate if self.rate > 0 else None


class Replay:
    """Re-reads ``[since, until]`` (until: now when not given) of the ingest streams."""

    def __init__(
        self,
        settings: Settings,
        js: JetStreamContext,
        pool: asyncpg.Pool,
        since: datetime,
        until: datetime | None = None,
        subject: str | None = None,
        *,
        fetch: int | None = None,
    ) -> None:
        if since.tzinfo is None or (until is not None and until.tzinfo is None):
            raise ReplayError("since and until need a time zone")
        self.until = until or datetime.now(UTC)
        if since >= self.until:
            raise ReplayError(f"since ({since.isoformat()}) is not before until")
        root = settings.subjects.root
        if subject is not None and not subject.startswith(f"{root}."):
            raise ReplayError(f"subject {subject!r} is not under {root}.")
        self.streams = stream_for(settings, subject or f"{root}.>")
        if not self.streams:
            raise ReplayError(f"subject {subject!r} is not read by ingest")
        self.settings = settings
        self.since = since
        self.subject = subject
        self.fetch = fetch or settings.ingest_fetch
        self._js = js
        self.pipeline = Pipeline(settings, js, pool, None, replay=True)
        self.progress = Progress(total=0)

    @property
    def stats(self) -> Stats:
        return self.pipeline.stats

    async def _pending_from(self, stream: str, start: datetime) -> int:
        info = await self._js.add_consumer(
            stream, replay_config(start, self.subject, self.settings, stream)
        )
        try:
            return info.num_pending or 0
        finally:
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(stream, info.name)

    async def count(self) -> int:
        """Messages in the range, counted by two probe consumers per stream."""
        total = 0
        for stream in self.streams:
            total += await self._pending_from(stream, self.since)
            total -= await self._pending_from(stream, self.until)
        self.progress.total = max(total, 0)
        return self.progress.total

    async def run(self, on_progress: Callable[[Progress], None] | None = None) -> Progress:
        if not self.progress.total:
            await self.count()
        self.progress.started = time.monotonic()
        for stream in self.streams:
            await self._replay_stream(stream, on_progress)
        self.progress.finished = time.monotonic()
        if on_progress is not None:
            on_progress(self.progress)
        return self.progress

    async def _replay_stream(
        self, stream: str, on_progress: Callable[[Progress], None] | None
    ) -> None:
        info = await self._js.add_consumer(
            stream, replay_config(self.since, self.subject, self.settings, stream)
        )
        if not info.num_pending:
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(stream, info.name)
            return
        sub = await self._js.pull_subscribe_bind(consumer=info.name, stream=stream)
        try:
            while True:
                try:
                    msgs = await sub.fetch(self.fetch, timeout=2.0)
                except (NatsTimeoutError, TimeoutError):
                    break
                in_range = [m for m in msgs if (m.metadata.timestamp or self.until) <= self.until]
                if in_range:
                    await self.pipeline.process(in_range)
                    self.progress.done += len(in_range)
                    if on_progress is not None:
                        on_progress(self.progress)
                if len(in_range) < len(msgs) or msgs[-1].metadata.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(stream, info.name)
