"""The ingest worker: pull from the shared durable consumers and feed the pipeline.

Lifecycle as in arq: ``start()`` connects and creates or updates streams and consumers;
``run()`` pulls until ``stop()``; the batch in hand is committed and acked first; ``close()``
drains. Several workers (processes) bind the same durable consumers and share the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

import asyncpg
import msgspec
import valkey.asyncio as valkey
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError

from unity.ingest.cache import LatestCache, load_latest
from unity.ingest.dlq import Stored, dead_letter_stored
from unity.ingest.pipeline import Pipeline, Stats, Stopped
from unity.ingest.report import Reporter
from unity.ingest.streams import (
    ensure_consumers,
    ensure_streams,
    ingest_filters,
    max_deliveries_subject,
)
from unity.schemas.storage import DURABLE
from unity.sdk import Publisher
from unity.sdk.connection import connect_nats, pg_pool, valkey_client
from unity.sdk.settings import Endpoints, Settings

log = logging.getLogger(__name__)

# nats-py's fetch(n), once a first message arrived on a waiting pull, keeps waiting for all n
# until its timeout. So: with a backlog, fetch(n) (what is stored comes at once); caught up,
# fetch(1) with a long wait (returns on the first message), then what else is there within
# FETCH_LINGER_S. Latency stays in milliseconds and an idle worker polls once a second.
FETCH_WAIT_S = 1.0
FETCH_LINGER_S = 0.01
# A fetch of 50 000 samples allocates several objects per sample, all alive until the commit:
# with CPython's default of a young collection every 700 allocations, the collector walked
# them again and again and took about a quarter of the decode time (docs/benchmarks.md).
# Process-wide, so it only ever raises the threshold.
GC_YOUNG_THRESHOLD = 10_000
# Workers share the server's max-deliveries advisories: each is dead-lettered by one of them.
ADVISORY_QUEUE = "unity-ingest"


class MaxDeliveries(msgspec.Struct):
    """The server's advisory for a message that reached the consumer's max_deliver."""

    stream: str
    stream_seq: int
    deliveries: int = 0


class Ingest:
    """One ingest worker on the shared durable consumers."""

    def __init__(
        self,
        settings: Settings,
        ep: Endpoints,
        *,
        fetch: int | None = None,
        pullers: int | None = None,
        name: str = "w0",
        report_interval: float | None = None,
    ) -> None:
        pullers = settings.ingest_pullers if pullers is None else pullers
        if pullers < 1:
            raise ValueError("an ingest worker needs at least one puller")
        self.settings = settings
        self.ep = ep
        self.fetch = fetch or settings.ingest_fetch
        if self.fetch < 1 or self.fetch >= settings.ingest_max_ack_pending:
            raise ValueError("fetch must be at least 1 and below ingest_max_ack_pending")
        # Two pullers on the metrics consumer: one decodes while the other waits on COPY.
        self.pullers = pullers
        self.name = name
        self.report_interval = (
            settings.ingest_report_interval_s if report_interval is None else report_interval
        )
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._pool: asyncpg.Pool | None = None
        self._valkey: valkey.Valkey | None = None
        self._cache: LatestCache | None = None
        self._pipeline: Pipeline | None = None
        self._stopping = asyncio.Event()

    @property
    def stats(self) -> Stats:
        assert self._pipeline is not None, "start() first"
        return self._pipeline.stats

    @property
    def cache(self) -> LatestCache:
        assert self._cache is not None, "start() first"
        return self._cache

    async def start(self) -> None:
        young, *older = gc.get_threshold()
        if young < GC_YOUNG_THRESHOLD:
            gc.set_threshold(GC_YOUNG_THRESHOLD, *older)
        self._nc = await connect_nats(self.ep, f"unity-ingest-{self.name}")
        self._js = self._nc.jetstream()
        await ensure_streams(self._js, self.settings)
        await ensure_consumers(self._js, self.settings)
        # No connection floor: asyncpg would restore it in the background during an outage,
        # with a traceback per attempt; the pipeline's retries say what matters, once.
        self._pool = await pg_pool(self.ep, min_size=0, max_size=self.pullers + 2)
        self._valkey = valkey_client(self.ep)
        pool = self._pool
        self._cache = LatestCache(
            self._valkey, self.settings.subjects.root, load=lambda: load_latest(pool)
        )
        await self._cache.check()
        self._pipeline = Pipeline(self.settings, self._js, self._pool, self._cache)
        for stream in ingest_filters(self.settings):
            await self._nc.subscribe(
                max_deliveries_subject(stream), queue=ADVISORY_QUEUE, cb=self._on_max_deliveries
            )

    async def stop(self) -> None:
        """Stop fetching; the batch in hand is still committed and acked."""
        self._stopping.set()
        if self._pipeline is not None:
            self._pipeline.stopping.set()

    async def close(self) -> None:
        if self._cache is not None:
            await self._cache.close()
        if self._nc is not None:
            await self._nc.drain()
        if self._pool is not None:
            await self._pool.close()
        if self._valkey is not None:
            await self._valkey.aclose()

    async def run(self) -> None:
        """Pull and process until stop()."""
        assert self._js is not None, "start() first"
        subjects = self.settings.subjects
        subs = [
            await self._js.pull_subscribe_bind(durable=DURABLE, stream=subjects.metrics_stream)
            for _ in range(self.pullers)
        ]
        subs.append(
            await self._js.pull_subscribe_bind(durable=DURABLE, stream=subjects.events_stream)
        )
        tasks = [asyncio.create_task(self._pull(sub)) for sub in subs]
        if self.report_interval > 0:
            tasks.append(asyncio.create_task(self._report(subs[0], subs[-1])))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for sub in subs:
                with contextlib.suppress(NatsError):
                    await sub.unsubscribe()

    async def _next(self, sub: JetStreamContext.PullSubscription, backlog: bool) -> list[Msg]:
        if backlog or self.fetch == 1:
            return await sub.fetch(self.fetch, timeout=FETCH_WAIT_S)
        msgs = await sub.fetch(1, timeout=FETCH_WAIT_S)
        with contextlib.suppress(NatsTimeoutError, TimeoutError):
            msgs += await sub.fetch(self.fetch - 1, timeout=FETCH_LINGER_S)
        return msgs

    async def _pull(self, sub: JetStreamContext.PullSubscription) -> None:
        assert self._pipeline is not None
        backoff = 0.5
        backlog = True
        failures = 0
        while not self._stopping.is_set():
            try:
                msgs = await self._next(sub, backlog)
            except (NatsTimeoutError, TimeoutError):
                backlog = False
                continue
            except NatsError as exc:
                # Once per outage, not per attempt: during a leader election or a node's loss
                # every fetch fails for seconds (nats-py's ServiceUnavailableError says nothing).
                if failures == 0:
                    log.warning("fetch failed (%s: %s); retrying", type(exc).__name__, exc)
                failures += 1
                await asyncio.sleep(backoff)
                continue
            if failures:
                log.info("fetching again after %d failed attempt(s)", failures)
                failures = 0
            backlog = len(msgs) >= self.fetch
            if not msgs:
                continue
            try:
                await self._pipeline.process(msgs)
            except Stopped as exc:
                log.warning("%s; %d message(s) will be redelivered", exc, len(msgs))
                return
            except Exception as exc:
                # Not transient and not found in one message (say a missing table): keep the
                # process up; the batch is redelivered after the ack wait, at most
                # ingest_max_deliver times, then dead-lettered by _on_max_deliveries.
                if isinstance(exc, asyncpg.PostgresError | JetStreamError):
                    log.error("batch failed (%s: %s); not acked", type(exc).__name__, exc)
                else:
                    log.exception("batch failed; not acked")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = 0.5

    async def _on_max_deliveries(self, advisory: Msg) -> None:
        """Dead-letter a message JetStream stopped delivering (``max_deliveries``): it failed
        or stalled a worker every time, and must not wait unseen in the stream."""
        assert self._js is not None and self._pipeline is not None
        try:
            event = msgspec.json.decode(advisory.data, type=MaxDeliveries)
            raw = await self._js.get_msg(event.stream, event.stream_seq)
            stored = Stored(
                event.stream, event.stream_seq, raw.subject or "", raw.data or b"", raw.headers
            )
            why = f"not acked after {event.deliveries} deliveries (ingest_max_deliver)"
            await dead_letter_stored(
                self._js, self.settings.subjects, stored, "max_deliveries", why
            )
        except (msgspec.DecodeError, NatsError, JetStreamError, TimeoutError) as exc:
            # Not found: the stream's limits removed it; either way nothing else can be done.
            log.error("max-deliveries advisory not handled (%s: %s)", type(exc).__name__, exc)
            return
        self._pipeline.stats.dead["max_deliveries"] += 1
        log.warning("dead-lettered max_deliveries from %s: %s", stored.subject, why)

    async def _report(
        self, metrics: JetStreamContext.PullSubscription, events: JetStreamContext.PullSubscription
    ) -> None:
        assert self._js is not None and self._pipeline is not None and self._cache is not None
        publisher = Publisher(self._js, self.settings.subjects, max_buffered=100)
        reporter = Reporter(self.settings.host, self.name)
        subjects = self.settings.subjects
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.report_interval)
            if self._stopping.is_set():
                return
            # A quiet period still gets the values that wait for Valkey written, and a Valkey
            # that restarted meanwhile refreshed.
            await self._cache.update(())
            await self._cache.check()
            pending: dict[str, tuple[int, int]] = {}
            streams = ((subjects.metrics_stream, metrics), (subjects.events_stream, events))
            for stream, sub in streams:
                try:
                    info = await sub.consumer_info()
                except (NatsError, JetStreamError, TimeoutError) as exc:
                    log.warning("consumer info of %s failed: %s", stream, exc)
                    continue
                pending[stream] = (info.num_pending or 0, info.num_ack_pending or 0)
            batch, report = reporter.batch(
                self._pipeline.stats, pending, self._cache.failures, self._cache.waiting
            )
            await publisher.publish_batch(batch)
            await publisher.publish_health(report, batch.seq)
