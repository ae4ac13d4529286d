"""Storage maintenance: day partitions ahead, rollups of closed buckets, retention.

On plain PostgreSQL (the embedded stack) this does the work itself:

- partitions: each partitioned table gets its partitions a few days ahead. Rows for a day
  without one (a late replay, a clock far off) land in the DEFAULT partition and are moved into
  a proper partition here, so COPY never fails and nothing is lost.
- rollups: ``samples_1m`` and ``samples_1h`` are computed from raw rows with ``date_bin`` for
  buckets closed since the last run (``rollup_watermarks``), recomputing ``rollup_lookback_s``
  before it to take in late samples, and ``samples_5m`` from ``samples_1m`` the same way, never
  past the 1m watermark. Upserts make every run idempotent.
- retention: partitions entirely older than the window are dropped (whole days, like
  TimescaleDB's whole chunks).

On TimescaleDB the policies created by the migration do this in the background; a run here
refreshes the continuous aggregates (never below the raw retention window once they hold
buckets, see ``ingest.timescale``) and drops chunks, so both paths give the same result.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from unity.ingest import timescale
from unity.schemas.storage import ORIGIN, TIERS, Retention, Tier, floor
from unity.sdk.connection import pg_connect
from unity.sdk.settings import Endpoints, Settings

log = logging.getLogger(__name__)

# One maintainer at a time per database, whoever runs it.
LOCK_KEY = 0x756E6974796D6E74
# Rollups are computed in slices of this many buckets' worth of time: bounded transactions.
SLICE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Partitioned:
    table: str
    column: str
    width: timedelta
    retention: str  # which Retention field applies


PARTITIONED = (
    Partitioned("samples", "time", timedelta(days=1), "raw"),
    Partitioned("events", "time", timedelta(days=1), "raw"),
    Partitioned("samples_1m", "bucket", timedelta(days=1), "m1"),
    Partitioned("samples_5m", "bucket", timedelta(days=7), "m5"),
    Partitioned("samples_1h", "bucket", timedelta(days=30), "h1"),
)
# The tiers in dependency order: a tier read from another comes after it.
ROLLUPS = TIERS
# Per source: its time column and the aggregates of one bucket of the tier read from it.
SOURCES = {
    "samples": (
        "time",
        "min(value), max(value), avg(value), sum(value), count(*), "
        "(max(ARRAY[date_part('epoch', time), value]))[2]",
    ),
    "samples_1m": (
        "bucket",
        # sum(bigint) is numeric; float8 sums whole counts exactly up to 2**53.
        "min(min), max(max), sum(sum) / sum(count::float8), sum(sum), sum(count), "
        "(max(ARRAY[date_part('epoch', bucket), last]))[2]",
    ),
}


@dataclass(slots=True)
class Report:
    """What one run did."""

    backend: str = "plain"
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    rows_moved: int = 0
    rows_expired: int = 0
    rolled_until: dict[str, datetime] = field(default_factory=dict)
    skipped: bool = False


def partition_name(spec: Partitioned, lo: datetime) -> str:
    return f"{spec.table}_p{lo:%Y%m%d}"


def _literal(t: datetime) -> str:
    # Partition bounds are DDL, which takes no bind parameters; t is always our own datetime.
    return f"'{t.astimezone(UTC).isoformat()}'"


async def _partitions(conn: asyncpg.Connection, spec: Partitioned) -> dict[datetime, str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::text::regclass",
        spec.table,
    )
    prefix = f"{spec.table}_p"
    found: dict[datetime, str] = {}
    for r in rows:
        name: str = r["relname"]
        suffix = name.removeprefix(prefix)
        if name.startswith(prefix) and len(suffix) == 8 and suffix.isdigit():
            lo = datetime.strptime(suffix, "%Y%m%d").replace(tzinfo=UTC)
            found[lo] = name
    return found


async def _create_partition(conn: asyncpg.Connection, spec: Partitioned, lo: datetime) -> int:
    """Create the partition for [lo, lo + width), moving its rows out of the DEFAULT partition.

    Created standalone and then attached: ATTACH needs only SHARE UPDATE EXCLUSIVE on the
    parent, so concurrent COPY into other days goes on. Returns the number of rows moved.
    """
    name = partition_name(spec, lo)
    hi = lo + spec.width
    table, column = spec.table, spec.column
    async with conn.transaction():
        # Holds off inserts into DEFAULT until the range is attached; no row can slip past.
        await conn.execute(f"LOCK TABLE {table}_default IN SHARE ROW EXCLUSIVE MODE")
        await conn.execute(
            f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        status = await conn.execute(
            f"WITH moved AS (DELETE FROM {table}_default "  # noqa: S608 -- names are constants
            f"WHERE {column} >= $1 AND {column} < $2 RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved",
            lo,
            hi,
        )
        await conn.execute(
            f"ALTER TABLE {table} ATTACH PARTITION {name} "
            f"FOR VALUES FROM ({_literal(lo)}) TO ({_literal(hi)})"
        )
    return int(status.split()[-1])


async def ensure_partitions(
    conn: asyncpg.Connection, spec: Partitioned, lo: datetime, hi: datetime, report: Report
) -> None:
    """Make sure partitions cover [lo, hi)."""
    existing = await _partitions(conn, spec)
    start = floor(lo, spec.width)
    while start < hi:
        if start not in existing:
            report.rows_moved += await _create_partition(conn, spec, start)
            report.partitions_created.append(partition_name(spec, start))
        start += spec.width


async def _empty_default(conn: asyncpg.Connection, spec: Partitioned, report: Report) -> None:
    """Rows in DEFAULT move into partitions of their own (expired ones go with them later)."""
    starts = await conn.fetch(
        f"SELECT DISTINCT date_bin($1::interval, {spec.column}, $2::timestamptz) AS lo "  # noqa: S608
        f"FROM {spec.table}_default",
        spec.width,
        ORIGIN,
    )
    for r in starts:
        await ensure_partitions(conn, spec, r["lo"], r["lo"] + spec.width, report)


async def _roll(conn: asyncpg.Connection, rollup: Tier, lo: datetime, hi: datetime) -> None:
    """Upsert the buckets of [lo, hi) from the tier's source; unchanged buckets are not
    rewritten."""
    column, aggregates = SOURCES[rollup.source]
    await conn.execute(
        f"""
        INSERT INTO {rollup.table} AS t (bucket, series_id, min, max, avg, sum, count, last)
        SELECT date_bin($3::interval, {column}, $4::timestamptz), series_id, {aggregates}
        FROM {rollup.source}
        WHERE {column} >= $1 AND {column} < $2
        GROUP BY 1, 2
        ON CONFLICT (series_id, bucket) DO UPDATE
        SET min = excluded.min, max = excluded.max, avg = excluded.avg, sum = excluded.sum,
            count = excluded.count, last = excluded.last
        WHERE (t.min, t.max, t.sum, t.count, t.last)
              IS DISTINCT FROM (excluded.min, excluded.max, excluded.sum, excluded.count,
                                excluded.last)
        """,  # noqa: S608 -- table, column and aggregates are constants
        lo,
        hi,
        rollup.width,
        ORIGIN,
    )


async def _advance(conn: asyncpg.Connection, rollup: Tier, until: datetime) -> None:
    await conn.execute(
        "INSERT INTO rollup_watermarks (resolution, done_until) VALUES ($1, $2) "
        "ON CONFLICT (resolution) DO UPDATE "
        "SET done_until = greatest(rollup_watermarks.done_until, excluded.done_until)",
        rollup.table,
        until,
    )


async def advance_rollup(
    conn: asyncpg.Connection,
    rollup: Tier,
    now: datetime,
    keep: timedelta,
    lookback: timedelta,
    report: Report,
) -> None:
    """Bring one rollup up to the last closed bucket, one bounded slice per transaction."""
    closed = floor(now, rollup.width)
    column, _ = SOURCES[rollup.source]
    watermark = "SELECT done_until FROM rollup_watermarks WHERE resolution = $1"
    if rollup.source != "samples":
        # A tier read from a rollup goes no further than that rollup is complete.
        source_done: datetime | None = await conn.fetchval(watermark, rollup.source)
        if source_done is None:
            return
        closed = min(closed, floor(source_done, rollup.width))
    done: datetime | None = await conn.fetchval(watermark, rollup.table)
    if done is not None and done >= closed:
        return
    if done is None:
        # First run: everything present in the source is history to roll up.
        first: datetime | None = await conn.fetchval(
            f"SELECT min({column}) FROM {rollup.source}"  # noqa: S608 -- constants
        )
        lo = first if first is not None else closed
    else:
        lo = done - lookback
    lo = max(floor(lo, rollup.width), floor(now - keep, rollup.width))
    spec = next(p for p in PARTITIONED if p.table == rollup.table)
    while lo < closed:
        hi = min(lo + SLICE, closed)
        if await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {rollup.source} "  # noqa: S608 -- constants
            f"WHERE {column} >= $1 AND {column} < $2)",
            lo,
            hi,
        ):
            # Slices without source rows have nothing to upsert: a sparse backfill stays cheap.
            await ensure_partitions(conn, spec, lo, hi, report)
            async with conn.transaction():
                await _roll(conn, rollup, lo, hi)
                await _advance(conn, rollup, hi)
        lo = hi
    await _advance(conn, rollup, closed)
    report.rolled_until[rollup.table] = closed


async def _drop_expired(
    conn: asyncpg.Connection, spec: Partitioned, keep_from: datetime, report: Report
) -> None:
    for lo, name in sorted((await _partitions(conn, spec)).items()):
        if lo + spec.width <= keep_from:
            await conn.execute(f"DROP TABLE {name}")
            report.partitions_dropped.append(name)


async def _maintain_plain(
    conn: asyncpg.Connection, settings: Settings, now: datetime, report: Report
) -> None:
    retention = Retention.from_settings(settings)
    ahead = timedelta(days=settings.partitions_ahead_days)
    keep_from = {s.table: floor(now - retention.of(s.retention), s.width) for s in PARTITIONED}
    # Rows first go where they belong, then rollups read them, then retention drops old days.
    for spec in PARTITIONED:
        await _empty_default(conn, spec, report)
        await ensure_partitions(conn, spec, now, now + ahead + spec.width, report)
    lookback = timedelta(seconds=settings.rollup_lookback_s)
    for r in ROLLUPS:
        await advance_rollup(conn, r, now, retention.of(r.retention), lookback, report)
    for spec in PARTITIONED:
        await _drop_expired(conn, spec, keep_from[spec.table], report)


async def _maintain_timescale(
    conn: asyncpg.Connection, settings: Settings, now: datetime, report: Report
) -> None:
    report.backend = "timescale"
    retention = Retention.from_settings(settings)
    # Raw chunks before this may be gone, dropped by us or by the retention policy (on the
    # server's clock); a refresh reaching below it would delete their stored buckets.
    server_now: datetime = await conn.fetchval("SELECT now()")
    raw_from = max(now, server_now) - retention.raw
    for r in ROLLUPS:
        closed = floor(now, r.width)
        keep_from = now - retention.of(r.retention)
        if await timescale.has_stored_buckets(conn, r.table):
            start = max(raw_from, keep_from)
        else:
            # Nothing stored that a refresh could delete: roll up every raw row still kept,
            # as the plain path's first run does, before retention drops the oldest.
            start = keep_from
        await timescale.refresh(conn, r.table, start, closed)
        report.rolled_until[r.table] = closed
    cutoffs = {rel: now - window for rel, window in retention.by_relation().items()}
    report.partitions_dropped += await timescale.drop_chunks(conn, cutoffs)


async def maintain(
    conn: asyncpg.Connection, settings: Settings, now: datetime | None = None
) -> Report:
    """One maintenance run; skipped (``report.skipped``) while another maintainer runs."""
    now = now or datetime.now(UTC)
    report = Report()
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
        report.skipped = True
        return report
    try:
        if await timescale.installed(conn):
            await _maintain_timescale(conn, settings, now, report)
        else:
            await _maintain_plain(conn, settings, now, report)
        # Health history has no partitions of its own: it is small, a DELETE keeps it bounded.
        status = await conn.execute(
            "DELETE FROM plugin_runs WHERE time < $1",
            now - Retention.from_settings(settings).raw,
        )
        report.rows_expired += int(status.split()[-1])
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return report


class Maintainer:
    """`unity maintain`: a run every ``maintain_interval_s``; a failed run is retried next time."""

    def __init__(self, settings: Settings, ep: Endpoints) -> None:
        self.settings = settings
        self.ep = ep
        self.runs = 0
        self.failures = 0
        self._conn: asyncpg.Connection | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        await self._connect()

    async def _connect(self) -> asyncpg.Connection:
        conn = await pg_connect(self.ep)
        # Never queue behind (and in front of) ingest for long: a busy lock means try later.
        await conn.execute("SET lock_timeout = '5s'")
        if await timescale.installed(conn):
            retention = Retention.from_settings(self.settings)
            await timescale.apply_retention(conn, retention.by_relation())
            for view in await timescale.unsafe_refresh_policies(conn, retention.raw):
                log.warning(
                    "the refresh policy of %s reaches back past raw retention (%s) and will "
                    "delete the buckets of dropped raw chunks; give it a smaller start_offset",
                    view,
                    retention.raw,
                )
        self._conn = conn
        return conn

    async def run_once(self) -> Report:
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = await self._connect()
        report = await maintain(conn, self.settings)
        self.runs += 1
        if report.partitions_created or report.partitions_dropped or report.rows_moved:
            log.info(
                "maintenance: created %s, dropped %s, moved %d rows from DEFAULT",
                report.partitions_created,
                report.partitions_dropped,
                report.rows_moved,
            )
        return report

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                self.failures += 1
                log.warning("maintenance run failed, retrying in %.0fs: %s", self.interval, exc)
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                continue

    @property
    def interval(self) -> float:
        return self.settings.maintain_interval_s

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
