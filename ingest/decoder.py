"""Messages into rows: decode and validate with the schemas, resolve nothing yet.

The hot path of ingest. Per sample it does a dict lookup for the series id (a key that needs
no label sorting), a tuple for the row and, for the newest sample of each series only, a
``LatestValue``. Misses are resolved by the catalogue in one round trip at commit time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from nats.aio.msg import Msg

from ingest.catalogue import Catalogue, FastKey, SeriesKey, SeriesSpec, canonical_labels
from ingest.lineprotocol import to_batches
from schemas import (
    DecodeError,
    Event,
    HealthReport,
    MetricBatch,
    Sample,
    decode,
    split_batch,
    token,
)
from schemas.api import LatestValue

Run = tuple[datetime, str, str, str, str, str, float, int]
EventRow = tuple[datetime, str, str, str, str, str, str, str]
Source = tuple[str, str, str]  # host, plugin, instance


@dataclass(slots=True)
class Seen:
    """Registry facts about one plugin instance gathered from a batch of messages."""

    last_seen: datetime
    health: str | None = None
    health_message: str = ""
    health_at: datetime | None = None


@dataclass(slots=True)
class Dead:
    msg: Msg
    reason: str
    message: str


@dataclass(slots=True)
class Work:
    """What one fetch turns into before the commit."""

    rows: list[tuple[int, int, float]] = field(default_factory=list)  # (unix µs, series, value)
    # Rows whose series id is not cached yet: (row index, key, spec).
    unresolved: list[tuple[int, FastKey, SeriesSpec]] = field(default_factory=list)
    # Newest sample per series (by id, or by key while the id is unknown): only these become
    # LatestValue objects for Valkey.
    newest: dict[FastKey | int, tuple[float, Sample, Source]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    seen: dict[Source, Seen] = field(default_factory=dict)
    dead: list[Dead] = field(default_factory=list)
    strings_skipped: int = 0

    def latest(self) -> list[LatestValue]:
        return [
            LatestValue(
                host=src[0],
                plugin=src[1],
                instance=src[2],
                name=s.name,
                labels=s.labels,
                unit=s.unit,
                kind=s.kind,
                value=s.value,
                ts=datetime.fromtimestamp(epoch, UTC),
            )
            for epoch, s, src in self.newest.values()
        ]

    def reject(self, msg: Msg, reason: str, message: str) -> None:
        """Dead-letter ``msg``; several problems in one message become one entry."""
        if self.dead and self.dead[-1].msg is msg:
            held = self.dead[-1]
            if held.reason != reason:
                held.reason = "bad_samples"
            held.message = f"{held.message}; {message}"[:2000]
        else:
            self.dead.append(Dead(msg, reason, message[:2000]))

    def see(self, source: Source, at: datetime) -> None:
        seen = self.seen.get(source)
        if seen is None:
            self.seen[source] = Seen(at)
        elif at > seen.last_seen:
            seen.last_seen = at


def _ts(value: datetime | float | None, fallback: datetime) -> datetime:
    if value is None:
        return fallback
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value, UTC)


class Decoder:
    """Turns JetStream messages into a Work, using (and never changing) the catalogue's cache."""

    def __init__(self, catalogue: Catalogue) -> None:
        self._catalogue = catalogue
        self._json = msgspec.json.Encoder()

    def decode(self, msgs: list[Msg]) -> Work:
        work = Work()
        for msg in msgs:
            self.decode_one(msg, work)
        return work

    def decode_one(self, msg: Msg, work: Work) -> None:
        meta = msg.metadata
        published = meta.timestamp or datetime.now(UTC)
        headers = msg.headers
        content_type = headers.get("Content-Type") if headers else None
        parts = msg.subject.split(".", 3)
        kind = parts[1] if len(parts) > 1 else ""
        try:
            if kind == "metrics":
                self._batch(decode(msg.data, MetricBatch, content_type), msg, published, work)
            elif kind == "lp":
                self._lines(msg, parts[2] if len(parts) > 2 else "_", published, work)
            elif kind == "health":
                self._health(decode(msg.data, HealthReport, content_type), published, work)
            elif kind == "events":
                self._event(decode(msg.data, Event, content_type), published, work)
            else:
                work.reject(msg, "unknown_subject", f"no handler for {msg.subject}")
        except DecodeError as exc:
            work.reject(msg, exc.reason, str(exc))

    def _batch(self, batch: MetricBatch, msg: Msg, published: datetime, work: Work) -> None:
        batch_ts = _ts(batch.ts, published)
        batch_epoch = batch_ts.timestamp()
        batch_us = round(batch_epoch * 1_000_000)
        good, bad = split_batch(batch, batch_epoch)
        host, plugin, instance = token(batch.host), token(batch.plugin), batch.instance
        source = (host, plugin, instance)
        work.see(source, batch_ts)
        ids = self._catalogue.fast
        rows = work.rows
        newest = work.newest
        for sample, epoch in good:
            labels = sample.labels
            key = (host, plugin, instance, sample.name, *labels.items())
            ts = batch_us if sample.ts is None else round(epoch * 1_000_000)
            sid = ids.get(key)
            if sid is None:
                spec = SeriesSpec(
                    SeriesKey(host, plugin, instance, sample.name, canonical_labels(labels)),
                    sample.unit,
                    sample.kind,
                )
                work.unresolved.append((len(rows), key, spec))
                rows.append((ts, 0, sample.value))
                newest_key: FastKey | int = key
            else:
                rows.append((ts, sid, sample.value))
                newest_key = sid  # an int hashes far cheaper than the tuple
            held = newest.get(newest_key)
            if held is None or held[0] <= epoch:
                newest[newest_key] = (epoch, sample, source)
        if bad:
            reasons = {b.reason for b in bad}
            reason = bad[0].reason if len(reasons) == 1 else "bad_samples"
            work.reject(msg, reason, "; ".join(b.message for b in bad))

    def _lines(self, msg: Msg, host: str, published: datetime, work: Work) -> None:
        parsed = to_batches(msg.data, host)
        work.strings_skipped += parsed.strings_skipped
        for batch in parsed.batches:
            self._batch(batch, msg, published, work)
        if parsed.errors:
            work.reject(msg, "bad_line_protocol", "; ".join(parsed.errors))

    def _health(self, h: HealthReport, published: datetime, work: Work) -> None:
        at = _ts(h.ts, published)
        source = (token(h.host), token(h.plugin), h.instance)
        work.runs.append((at, *source, h.status, h.message, h.duration_ms, h.samples))
        work.see(source, at)
        seen = work.seen[source]
        if seen.health_at is None or at >= seen.health_at:
            seen.health, seen.health_message, seen.health_at = h.status, h.message, at

    def _event(self, e: Event, published: datetime, work: Work) -> None:
        at = _ts(e.ts, published)
        source = (token(e.host), token(e.plugin), e.instance)
        data = self._json.encode(e.data).decode()
        work.events.append((at, *source, e.kind, e.severity, e.message, data))
        work.see(source, at)
