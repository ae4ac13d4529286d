"""Messages into rows: decode and validate with the schemas, resolve nothing yet.

The hot path of ingest. A batch with the same series as the source's last one (the usual
case: a plugin sends the same series every run) takes their ids from that batch after a name
and labels comparison; otherwise each sample's id comes from a dict lookup (a key that needs no
label sorting). Each row is packed for binary COPY at once, and a ``CachedValue`` is built only
for the newest sample of each series. Misses are resolved by the catalogue in one round trip at
commit time.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from nats.aio.msg import Msg

from unity.ingest.catalogue import Catalogue, FastKey, SeriesKey, SeriesSpec, canonical_labels
from unity.ingest.copyformat import PG_EPOCH_US, ROW
from unity.ingest.lineprotocol import to_batches
from unity.schemas import (
    DecodeError,
    Event,
    HealthReport,
    MetricBatch,
    Sample,
    check_source,
    decode,
    split_batch,
    token,
)
from unity.schemas.storage import CachedValue

log = logging.getLogger(__name__)

Run = tuple[datetime, str, str, str, str, str, float, int]
EventRow = tuple[datetime, str, str, str, str, str, str, str]
Source = tuple[str, str, str]  # host, plugin, instance
# The (name, labels, series id) of each accepted sample of the last fully cached batch of a
# source with that many samples: a producer sends the same series in the same order each
# time, and comparing names and labels is about four times cheaper than building and hashing
# an identity tuple per sample (docs/benchmarks.md). Only ids already committed are in it.
Shape = list[tuple[str, dict[str, str], int]]
SHAPES_MAX = 10_000
Newest = tuple[float, tuple[int, int], Sample, Source]  # epoch, (message, position), ...
# How deep an event's free ``data`` may nest. PostgreSQL's jsonb parser recurses too, and a
# document far deeper than any inventory needs is refused here as ``too_deep`` rather than in
# the commit; msgspec's own bound (the interpreter's recursion limit, about 1000) catches the
# rest, in fields the decoder skips as well.
MAX_DEPTH = 32


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

    rows: list[bytes] = field(default_factory=list)  # binary COPY rows (ingest.copyformat)
    # Rows whose series id is not cached yet: (row index, key, spec).
    unresolved: list[tuple[int, FastKey, SeriesSpec]] = field(default_factory=list)
    # Newest sample per series (by id, or by key while the id is unknown): only these become
    # CachedValue objects for Valkey. Ties go to the sample read last: (message, position).
    newest: dict[FastKey | int, Newest] = field(default_factory=dict)
    # A batch whose series ids are all cached and whose samples all have the batch's time
    # keeps only the newest message per shape (by the shape's id: the entry holds the shape):
    # one comparison per message rather than per sample; latest() merges both.
    newest_shapes: dict[int, tuple[float, int, list[tuple[Sample, float]], Shape, Source]] = field(
        default_factory=dict
    )
    batches: int = 0
    runs: list[Run] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    seen: dict[Source, Seen] = field(default_factory=dict)
    dead: list[Dead] = field(default_factory=list)
    strings_skipped: int = 0
    # The first row of each message, in order: which message a row came from (conflicts).
    starts: list[int] = field(default_factory=list)
    msgs: list[Msg] = field(default_factory=list)
    # Values the commit found stored for (series id, microseconds) instead of this batch's,
    # and the messages (by id) already dead-lettered for it.
    stored: dict[tuple[int, int], float] = field(default_factory=dict)
    conflicted: set[int] = field(default_factory=set)

    def keep_newest(
        self, key: FastKey | int, epoch: float, at: tuple[int, int], sample: Sample, src: Source
    ) -> None:
        held = self.newest.get(key)
        if held is None or (held[0], held[1]) <= (epoch, at):
            self.newest[key] = (epoch, at, sample, src)

    def latest(
        self,
        stored: Mapping[tuple[int, int], float] | None = None,
        ids: Mapping[FastKey, int] | None = None,
    ) -> list[CachedValue]:
        """The newest value of each series; where ``stored`` holds a (series id, microseconds)
        the commit found taken by another value (a conflict), that stored value instead, so
        Valkey says what PostgreSQL holds. ``ids`` resolves series not cached at decode time."""
        for epoch, batch, good, shape, src in self.newest_shapes.values():
            for pos, ((sample, _), (_, _, sid)) in enumerate(zip(good, shape, strict=True)):
                self.keep_newest(sid, epoch, (batch, pos), sample, src)
        self.newest_shapes.clear()
        out = []
        for key, (epoch, _, s, src) in self.newest.items():
            value = s.value
            if stored:
                sid = key if isinstance(key, int) else (ids or {}).get(key, 0)
                value = stored.get((sid, round(epoch * 1_000_000)), value)
            out.append(
                CachedValue(
                    host=src[0],
                    plugin=src[1],
                    instance=src[2],
                    name=s.name,
                    labels=s.labels,
                    unit=s.unit,
                    kind=s.kind,
                    value=value,
                    ts=datetime.fromtimestamp(epoch, UTC),
                )
            )
        return out

    def message_of(self, row: int) -> Msg:
        """The message whose sample became row ``row``."""
        return self.msgs[bisect_right(self.starts, row) - 1]

    def reject(self, msg: Msg, reason: str, message: str) -> None:
        """Dead-letter ``msg``; several problems in one message become one entry (the DLQ
        keeps one per message: its Msg-Id is the original's stream sequence)."""
        held = next((d for d in reversed(self.dead) if d.msg is msg), None)
        if held is not None:
            if held.reason != reason:
                held.reason = "bad_samples"
            held.message = f"{held.message}; {message}"[:2000]
        else:
            self.dead.append(Dead(msg, reason, message[:2000]))

    def mark(self) -> tuple[int, int, int, int, int]:
        return (
            len(self.rows),
            len(self.unresolved),
            len(self.runs),
            len(self.events),
            self.batches,
        )

    def undo(self, mark: tuple[int, int, int, int, int]) -> None:
        """Drop what was added since ``mark``: a message that failed half-way stores nothing
        of its own (its registry last-seen may stay: it did publish)."""
        rows, unresolved, runs, events, batches = mark
        del self.rows[rows:], self.unresolved[unresolved:], self.runs[runs:], self.events[events:]
        for key in [k for k, held in self.newest.items() if held[1][0] >= batches]:
            del self.newest[key]
        for key in [k for k, held in self.newest_shapes.items() if held[1] >= batches]:
            del self.newest_shapes[key]

    def see(self, source: Source, at: datetime) -> None:
        seen = self.seen.get(source)
        if seen is None:
            self.seen[source] = Seen(at)
        elif at > seen.last_seen:
            seen.last_seen = at


def _same_series(good: list[tuple[Sample, float]], shape: Shape) -> bool:
    """Whether ``good`` holds the series of ``shape``, in its order (both of one length)."""
    for (sample, _), (name, labels, _) in zip(good, shape, strict=True):
        if sample.name != name or sample.labels != labels:
            return False
    return True


def _same_source(parts: list[str], host: str, plugin: str) -> None:
    """Refuse a body whose host or plugin is not the one its subject names: per-host
    publish permissions on subjects would protect nothing otherwise. Producers name the
    subject with ``token()`` of the body's values, so both sides are compared sanitised.
    A name over its length limit is left to that check, which gives the clearer reason."""
    named = (parts[2], parts[3]) if len(parts) == 4 else (".".join(parts[2:]), "")
    said = (token(host), token(plugin))
    if named != said and check_source(host, plugin, "") is None:
        raise DecodeError(
            "subject_mismatch",
            f"the body says host {said[0]!r} plugin {said[1]!r}, "
            f"the subject {named[0]!r} {named[1]!r}",
        )


def _depth(value: object) -> int:
    """How deeply ``value`` nests lists and dicts, without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


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
        self._shapes: dict[tuple[Source, int], Shape] = {}

    def decode(self, msgs: list[Msg]) -> Work:
        work = Work()
        for msg in msgs:
            self.decode_one(msg, work)
        return work

    def decode_one(self, msg: Msg, work: Work) -> None:
        """Add ``msg`` to ``work``, or dead-letter it with a reason: whatever goes wrong with
        one message, the rest of the batch goes on."""
        mark = work.mark()
        work.starts.append(mark[0])
        work.msgs.append(msg)
        try:
            self._decode_one(msg, work)
        except DecodeError as exc:
            work.reject(msg, exc.reason, str(exc))
        except RecursionError:
            work.undo(mark)
            work.reject(msg, "too_deep", "nested deeper than the decoder's recursion limit")
        except Exception as exc:  # a bug met by this message: it must not stop the others
            work.undo(mark)
            log.exception("decoding the message from %s failed", msg.subject)
            work.reject(msg, "internal_error", f"{type(exc).__name__}: {exc}")

    def _decode_one(self, msg: Msg, work: Work) -> None:
        meta = msg.metadata
        published = meta.timestamp or datetime.now(UTC)
        headers = msg.headers
        content_type = headers.get("Content-Type") if headers else None
        parts = msg.subject.split(".", 3)
        kind = parts[1] if len(parts) > 1 else ""
        if kind == "metrics":
            batch = decode(msg.data, MetricBatch, content_type)
            _same_source(parts, batch.host, batch.plugin)
            self._batch(batch, msg, published, work)
        elif kind == "lp":
            self._lines(msg, parts[2] if len(parts) > 2 else "_", published, work)
        elif kind == "health":
            report = decode(msg.data, HealthReport, content_type)
            _same_source(parts, report.host, report.plugin)
            self._health(report, published, work)
        elif kind == "events":
            event = decode(msg.data, Event, content_type)
            _same_source(parts, event.host, event.plugin)
            if _depth(event.data) > MAX_DEPTH:
                raise DecodeError("too_deep", f"Event data nests deeper than {MAX_DEPTH} levels")
            self._event(event, published, work)
        else:
            work.reject(msg, "unknown_subject", f"no handler for {msg.subject}")

    def _batch(self, batch: MetricBatch, msg: Msg, published: datetime, work: Work) -> None:
        batch_ts = _ts(batch.ts, published)
        batch_epoch = batch_ts.timestamp()
        batch_us = round(batch_epoch * 1_000_000)
        good, bad = split_batch(batch, batch_epoch)
        host, plugin, instance = token(batch.host), token(batch.plugin), batch.instance
        source = (host, plugin, instance)
        work.see(source, batch_ts)
        shape_key = (source, len(good))
        shape = self._shapes.get(shape_key)
        known = shape is not None and _same_series(good, shape)
        if shape is None or not known:
            shape = self._lookup(source, good, work)
            known = all(sid for _, _, sid in shape)
            if len(self._shapes) >= SHAPES_MAX:
                self._shapes.clear()
            if known:
                self._shapes[shape_key] = shape
        append = work.rows.append
        pack = ROW.pack
        batch_pg = batch_us - PG_EPOCH_US
        order = work.batches
        work.batches += 1
        if known:  # every series id is cached
            own_ts = False
            for (sample, epoch), (_, _, sid) in zip(good, shape, strict=True):
                if sample.ts is None:
                    append(pack(3, 8, batch_pg, 8, sid, 8, sample.value))
                else:
                    ts = round(epoch * 1_000_000) - PG_EPOCH_US
                    append(pack(3, 8, ts, 8, sid, 8, sample.value))
                    own_ts = True
            if own_ts:  # rare: samples with their own times are compared one by one
                for pos, ((sample, epoch), (_, _, sid)) in enumerate(zip(good, shape, strict=True)):
                    work.keep_newest(sid, epoch, (order, pos), sample, source)
            else:
                held = work.newest_shapes.get(id(shape))
                if held is None or held[0] <= batch_epoch:
                    work.newest_shapes[id(shape)] = (batch_epoch, order, good, shape, source)
        else:
            for pos, ((sample, epoch), (_, _, sid)) in enumerate(zip(good, shape, strict=True)):
                ts = batch_pg if sample.ts is None else round(epoch * 1_000_000) - PG_EPOCH_US
                append(pack(3, 8, ts, 8, sid, 8, sample.value))
                if sid:
                    key: FastKey | int = sid  # an int hashes far cheaper than the tuple
                else:
                    key = (host, plugin, instance, sample.name, *sample.labels.items())
                work.keep_newest(key, epoch, (order, pos), sample, source)
        if bad:
            reasons = {b.reason for b in bad}
            reason = bad[0].reason if len(reasons) == 1 else "bad_samples"
            work.reject(msg, reason, "; ".join(b.message for b in bad))

    def _lookup(self, source: Source, good: list[tuple[Sample, float]], work: Work) -> Shape:
        """The shape of ``good`` with ids from the cache, 0 for each series left to the commit.

        An unresolved sample's row is the next one the caller appends, in ``good``'s order.
        """
        host, plugin, instance = source
        ids = self._catalogue.fast
        row = len(work.rows)
        shape: Shape = []
        for sample, _ in good:
            labels = sample.labels
            key = (host, plugin, instance, sample.name, *labels.items())
            sid = ids.get(key)
            if sid is None:
                spec = SeriesSpec(
                    SeriesKey(host, plugin, instance, sample.name, canonical_labels(labels)),
                    sample.unit,
                    sample.kind,
                )
                work.unresolved.append((row, key, spec))
                sid = 0
            shape.append((sample.name, labels, sid))
            row += 1
        return shape

    def _lines(self, msg: Msg, host: str, published: datetime, work: Work) -> None:
        parsed = to_batches(msg.data, host)
        work.strings_skipped += parsed.strings_skipped
        # Lines tagged with another host than the subject's are refused like a spoofed batch;
        # the rest of the message is stored (as with lines that do not parse).
        own = token(host)
        others = sorted(b.host for b in parsed.batches if b.host != own)
        for batch in parsed.batches:
            if batch.host == own:
                self._batch(batch, msg, published, work)
        if others:
            work.reject(
                msg, "subject_mismatch", f"lines of host(s) {', '.join(others)} on {msg.subject}"
            )
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
