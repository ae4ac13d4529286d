"""One batch of messages from fetch to ack: decode, commit, dead-letter, refresh Valkey, ack.

The order is what makes it safe: nothing is acked before its rows are committed and any DLQ
copy is stored by JetStream. A crash anywhere before the ack means redelivery, and the writer
turns redelivery into a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError

from unity.ingest.cache import LatestCache
from unity.ingest.catalogue import Catalogue
from unity.ingest.copyformat import unpack_row
from unity.ingest.decoder import Decoder, Work
from unity.ingest.dlq import dead_letter
from unity.ingest.writer import Conflict, write_work
from unity.sdk.settings import Settings

log = logging.getLogger(__name__)

# Errors that say "try again later", not "this input is bad".
TRANSIENT = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.CannotConnectNowError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    # A server that shuts down during a COPY leaves asyncpg's protocol mid-operation: releasing
    # the connection then raises this in place of the shutdown error (the pool has terminated
    # that connection, the next acquire opens a new one). Seen in a PostgreSQL restart test.
    asyncpg.InternalClientError,
    NatsError,
    JetStreamError,
    TimeoutError,
)
# Commit times kept for the next report's quantiles: one interval's worth at any sane rate, and
# a bound when reporting is off (nobody clears them then).
COMMITS_KEPT = 10_000
# Errors where PostgreSQL refuses the content of a message: it is isolated and dead-lettered.
REFUSED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


@dataclass(slots=True)
class Stats:
    batches: int = 0
    messages: int = 0
    samples: int = 0
    series_looked_up: int = 0
    merges: int = 0
    redelivered: int = 0
    strings_skipped: int = 0
    # Samples that met another value already stored for their series and time.
    conflicts: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    commit_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=COMMITS_KEPT))

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead.values())


class Stopped(Exception):
    """Stop was asked while a batch could not be written: it is left unacked for redelivery."""


class Pipeline:
    """Processes fetched batches; shared by the ingest workers and replay."""

    def __init__(
        self,
        settings: Settings,
        js: JetStreamContext,
        pool: asyncpg.Pool,
        cache: LatestCache | None,
        *,
        replay: bool = False,
    ) -> None:
        self.settings = settings
        self.subjects = settings.subjects
        self.catalogue = Catalogue()
        self.stats = Stats()
        self.stopping = asyncio.Event()
        self._decoder = Decoder(self.catalogue)
        # When writes began to fail (None: they succeed): an outage is logged when it starts
        # and when it ends, not at every retry of every puller.
        self._failing_since: float | None = None
        self._js = js
        self._pool = pool
        self._cache = cache
        # Replay re-reads data that ingest already saw: its rejects are in the DLQ already and
        # its values are older than what Valkey holds, so it counts rejects and skips Valkey.
        self._replay = replay

    async def process(self, msgs: list[Msg]) -> None:
        """Write, dead-letter, cache and ack ``msgs``; retries transient failures until stop."""
        keep_alive = asyncio.create_task(self._keep_alive(msgs))
        try:
            await self._process(msgs)
        finally:
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive

    async def _process(self, msgs: list[Msg]) -> None:
        work = self._decoder.decode(msgs)
        backoff = 0.5
        while True:
            try:
                await self._commit(work)
                break
            except TRANSIENT as exc:
                if self.stopping.is_set():
                    raise Stopped(f"stopping with an unwritten batch: {exc}") from exc
                name = type(exc).__name__
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("write failed (%s: %s); retrying until it succeeds", name, exc)
                else:
                    log.debug("write failed (%s: %s); retrying in %.1fs", name, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            except (asyncpg.PostgresError, JetStreamError) as exc:
                if not isinstance(exc, REFUSED):
                    raise  # not about one message (a missing table): the caller backs off
                await self._isolate(msgs, work, "db_refused", exc)
                return
            except Exception as exc:  # a bug met by some message: find it, keep the rest
                await self._isolate(msgs, work, "internal_error", exc)
                return
        if self._failing_since is not None:
            down = time.monotonic() - self._failing_since
            self._failing_since = None
            log.warning("writes succeed again after %.1fs of failures", down)
        if self._cache is not None and not self._replay:
            await self._cache.update(work.latest(work.stored, self.catalogue.fast))
        for msg in msgs:
            await msg.ack()
        stats = self.stats
        stats.batches += 1
        stats.messages += len(msgs)
        stats.samples += len(work.rows)
        stats.strings_skipped += work.strings_skipped
        stats.redelivered += sum(1 for m in msgs if m.metadata.num_delivered > 1)

    async def _isolate(self, msgs: list[Msg], work: Work, reason: str, exc: Exception) -> None:
        """Write ``msgs`` one at a time; the one that fails alone is dead-lettered."""
        if len(msgs) > 1:
            log.warning("a batch failed (%s: %s); writing it message by message", reason, exc)
            for msg in msgs:
                await self._process([msg])
            return
        if reason == "internal_error":
            log.error("writing the message from %s failed", msgs[0].subject, exc_info=exc)
        work = Work()
        work.reject(msgs[0], reason, f"{type(exc).__name__}: {exc}")
        await self._commit(work)
        await msgs[0].ack()
        self.stats.batches += 1
        self.stats.messages += 1

    async def _commit(self, work: Work) -> None:
        started = time.perf_counter()
        async with self._pool.acquire() as conn:
            written = await write_work(conn, self.catalogue, work)
        self.stats.commit_seconds.append(time.perf_counter() - started)
        self.stats.series_looked_up += written.series_looked_up
        self.stats.merges += written.path == "merge"
        if written.conflicts:
            self._conflicts(work, written.conflicts)
        # Dead letters before acks: the original is acked only once its DLQ copy is stored.
        for dead in work.dead:
            if not self._replay:
                await dead_letter(self._js, self.subjects, dead.msg, dead.reason, dead.message)
                subject = dead.msg.subject
                log.info("dead-lettered %s from %s: %s", dead.reason, subject, dead.message)
            self.stats.dead[dead.reason] += 1
        work.dead.clear()

    def _conflicts(self, work: Work, conflicts: list[Conflict]) -> None:
        """First committed wins: the stored value goes to Valkey, each message that brought
        another value goes to the DLQ as ``conflict`` (once, should the commit be retried)."""
        losers: dict[int, tuple[Msg, list[str]]] = {}
        for row, stored in conflicts:
            ts_us, sid, value = unpack_row(work.rows[row])
            work.stored[(sid, ts_us)] = stored
            msg = work.message_of(row)
            if id(msg) in work.conflicted:
                continue
            at = datetime.fromtimestamp(ts_us / 1_000_000, UTC).isoformat()
            note = f"series {sid} at {at}: {value!r}, stored {stored!r}"
            losers.setdefault(id(msg), (msg, []))[1].append(note)
        for key, (msg, notes) in losers.items():
            work.conflicted.add(key)
            self.stats.conflicts += len(notes)
            shown = "; ".join(notes[:5]) + (f" (+{len(notes) - 5} more)" if len(notes) > 5 else "")
            work.reject(
                msg, "conflict", f"another value is stored for {len(notes)} sample(s): {shown}"
            )

    async def _keep_alive(self, msgs: list[Msg]) -> None:
        """Tell JetStream the batch is still being worked on, so it is not redelivered."""
        interval = max(self.settings.ingest_ack_wait_s / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            for msg in msgs:
                await msg.in_progress()
