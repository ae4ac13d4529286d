"""The ingest worker: fetch a batch, decode, write, commit, refresh Valkey, then ack."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import msgspec
import valkey.asyncio as valkey
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from valkey.exceptions import ValkeyError

from compose.connect import connect_nats, pg_pool, valkey_client
from compose.settings import Endpoints, Settings
from ingest.cache import write_latest
from ingest.catalogue import Catalogue, SeriesKey, SeriesSpec, canonical_labels
from ingest.streams import DURABLE, ensure_consumers, ensure_streams
from ingest.writer import Row, write_samples
from schemas import (
    MSGPACK,
    DecodeError,
    Event,
    HealthReport,
    MetricBatch,
    decode,
    split_batch,
    token,
)
from schemas.api import LatestValue

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Stats:
    batches: int = 0
    messages: int = 0
    samples: int = 0
    dead_lettered: int = 0
    redelivered: int = 0
    valkey_failures: int = 0


@dataclass(slots=True)
class Work:
    """What one fetch turns into before the commit."""

    rows: list[Row] = field(default_factory=list)
    latest: list[LatestValue] = field(default_factory=list)
    specs: list[tuple[SeriesSpec, datetime, float]] = field(default_factory=list)
    runs: list[tuple[datetime, str, str, str, str, str, float, int]] = field(default_factory=list)
    events: list[tuple[datetime, str, str, str, str, str, str, str]] = field(default_factory=list)
    dead: list[tuple[Msg, str, str]] = field(default_factory=list)


def _ts(value: datetime | float | None, fallback: datetime) -> datetime:
    if value is None:
        return fallback
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value, UTC)


class Ingest:
    """One ingest worker on the shared durable consumers."""

    def __init__(self, settings: Settings, ep: Endpoints, *, fetch: int | None = None) -> None:
        self.settings = settings
        self.ep = ep
        self.fetch = fetch or settings.ingest_fetch
        self.root = settings.subjects.root
        self.catalogue = Catalogue()
        self.stats = Stats()
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._pool: asyncpg.Pool | None = None
        self._valkey: valkey.Valkey | None = None
        self._stopping = asyncio.Event()
        self._encoder = msgspec.json.Encoder()

    async def start(self) -> None:
        self._nc = await connect_nats(self.ep, "unity-ingest")
        self._js = self._nc.jetstream()
        await ensure_streams(self._js, self.settings)
        await ensure_consumers(self._js, self.settings)
        self._pool = await pg_pool(self.ep, max_size=2)
        self._valkey = valkey_client(self.ep)

    async def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
        if self._pool is not None:
            await self._pool.close()
        if self._valkey is not None:
            await self._valkey.aclose()

    async def run(self) -> None:
        """Pull and process until stop(); the batch in hand is finished and acked first."""
        assert self._js is not None, "start() first"
        subjects = self.settings.subjects
        subs = [
            await self._js.pull_subscribe_bind(durable=DURABLE, stream=subjects.metrics_stream),
            await self._js.pull_subscribe_bind(durable=DURABLE, stream=subjects.events_stream),
        ]
        try:
            await asyncio.gather(*(self._pull(sub) for sub in subs))
        finally:
            for sub in subs:
                await sub.unsubscribe()

    async def _pull(self, sub: JetStreamContext.PullSubscription) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                msgs = await sub.fetch(self.fetch, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            except NatsError as exc:
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(backoff)
                continue
            while True:
                try:
                    await self.process(msgs)
                except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                    # Nothing was acked: keep the batch, wait, try again (ack wait is long).
                    log.warning("database write failed (%s); retrying in %.1fs", exc, backoff)
                    for msg in msgs:
                        await msg.in_progress()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                else:
                    backoff = 0.5
                    break

    async def process(self, msgs: list[Msg]) -> None:
        """Decode, commit, update Valkey, dead-letter the rejects, then ack every message."""
        assert self._pool is not None and self._js is not None
        work = Work()
        for msg in msgs:
            self._decode_into(msg, work)
        async with self._pool.acquire() as conn, conn.transaction():
            if work.specs:
                await self.catalogue.resolve(conn, (s for s, _, _ in work.specs))
                for spec, ts, value in work.specs:
                    work.rows.append((ts, self.catalogue.id_of(spec.key), value))
                await write_samples(conn, work.rows)
            if work.runs:
                await conn.executemany(
                    "INSERT INTO plugin_runs (time, host, plugin, instance, status, message,"
                    " duration_ms, samples) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    " ON CONFLICT ON CONSTRAINT plugin_runs_identity DO NOTHING",
                    work.runs,
                )
            if work.events:
                await conn.executemany(
                    "INSERT INTO events (time, host, plugin, instance, kind, severity, message,"
                    " data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)"
                    " ON CONFLICT ON CONSTRAINT events_identity DO NOTHING",
                    work.events,
                )
        # Dead letters before acks: the original is acked only once its DLQ copy is stored.
        for msg, reason, message in work.dead:
            await self._dead_letter(msg, reason, message)
        await self._refresh_cache(work.latest)
        for msg in msgs:
            await msg.ack()
        self.stats.batches += 1
        self.stats.messages += len(msgs)
        self.stats.samples += len(work.rows)

    def _decode_into(self, msg: Msg, work: Work) -> None:
        meta = msg.metadata
        if meta.num_delivered > 1:
            self.stats.redelivered += 1
        published = meta.timestamp or datetime.now(UTC)
        content_type = (msg.headers or {}).get("Content-Type")
        parts = msg.subject.split(".")
        kind = parts[1] if len(parts) > 1 else ""
        try:
            if kind == "metrics":
                self._batch_into(decode(msg.data, MetricBatch, content_type), msg, published, work)
            elif kind == "health":
                h = decode(msg.data, HealthReport, content_type)
                work.runs.append(
                    (
                        _ts(h.ts, published),
                        token(h.host),
                        token(h.plugin),
                        h.instance,
                        h.status,
                        h.message,
                        h.duration_ms,
                        h.samples,
                    )
                )
            elif kind == "events":
                e = decode(msg.data, Event, content_type)
                work.events.append(
                    (
                        _ts(e.ts, published),
                        token(e.host),
                        token(e.plugin),
                        e.instance,
                        e.kind,
                        e.severity,
                        e.message,
                        self._encoder.encode(e.data).decode(),
                    )
                )
            else:
                work.dead.append((msg, "unknown_subject", f"no handler for {msg.subject}"))
        except DecodeError as exc:
            work.dead.append((msg, exc.reason, str(exc)))

    def _batch_into(self, batch: MetricBatch, msg: Msg, published: datetime, work: Work) -> None:
        batch_ts = _ts(batch.ts, published)
        good, bad = split_batch(batch, batch_ts.timestamp())
        host, plugin = token(batch.host), token(batch.plugin)
        for sample, epoch in good:
            labels = canonical_labels(sample.labels)
            key = SeriesKey(host, plugin, batch.instance, sample.name, labels)
            ts = batch_ts if sample.ts is None else datetime.fromtimestamp(epoch, UTC)
            work.specs.append((SeriesSpec(key, sample.unit, sample.kind), ts, sample.value))
            work.latest.append(
                LatestValue(
                    host=host,
                    plugin=plugin,
                    instance=batch.instance,
                    name=sample.name,
                    labels=sample.labels,
                    unit=sample.unit,
                    kind=sample.kind,
                    value=sample.value,
                    ts=ts,
                )
            )
        if bad:
            reason = bad[0].reason if len({b.reason for b in bad}) == 1 else "bad_samples"
            work.dead.append((msg, reason, "; ".join(b.message for b in bad)[:2000]))

    async def _dead_letter(self, msg: Msg, reason: str, message: str) -> None:
        assert self._js is not None
        meta = msg.metadata
        headers = {
            "Unity-Reason": reason,
            "Unity-Error": message.replace("\n", " ")[:2000],
            "Unity-Subject": msg.subject,
            "Unity-Stream-Seq": str(meta.sequence.stream),
            "Nats-Msg-Id": f"dlq:{meta.stream}:{meta.sequence.stream}",
        }
        if (msg.headers or {}).get("Content-Type") == MSGPACK:
            headers["Content-Type"] = MSGPACK
        await self._js.publish(self.settings.subjects.dlq(reason), msg.data, headers=headers)
        self.stats.dead_lettered += 1
        log.info("dead-lettered %s from %s: %s", reason, msg.subject, message)

    async def _refresh_cache(self, latest: list[LatestValue]) -> None:
        if not latest or self._valkey is None:
            return
        try:
            await write_latest(self._valkey, self.root, latest)
        except (ValkeyError, OSError) as exc:
            # Valkey is a cache: PostgreSQL has the data, the next batch refreshes it.
            self.stats.valkey_failures += 1
            log.warning("valkey update failed: %s", exc)
