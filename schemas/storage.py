"""What ingest and the API both know about storage, as descriptions: names, the Valkey key
layout, retention tiers and the bin origin. No I/O: each service does its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import msgspec

__all__ = [
    "DURABLE",
    "ORIGIN",
    "RUN_ID_LUA",
    "TIERS",
    "TIMESCALE_EXTENSION_SQL",
    "TIMESCALE_HYPERTABLE_SQL",
    "CachedValue",
    "Retention",
    "RetentionDays",
    "Tier",
    "floor",
    "index_key",
    "latest_key",
    "run_key",
    "stamps_key",
]

# The durable consumer the ingest workers share on the metrics and events streams.
DURABLE = "ingest"

# Partitions and rollup bins are counted from here (UTC), so bins line up across processes.
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


def floor(t: datetime, width: timedelta) -> datetime:
    """The start of the ``width`` bin holding ``t``, bins counted from :data:`ORIGIN`."""
    return ORIGIN + (t - ORIGIN) // width * width


class RetentionDays(Protocol):
    """The settings that say how long each resolution is kept (``Settings`` has them)."""

    @property
    def retention_raw_days(self) -> float: ...
    @property
    def retention_1m_days(self) -> float: ...
    @property
    def retention_5m_days(self) -> float: ...
    @property
    def retention_1h_days(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Retention:
    """How long raw samples (and events) and each rollup tier are kept."""

    raw: timedelta = timedelta(days=30)
    m1: timedelta = timedelta(days=90)
    m5: timedelta = timedelta(days=365)
    h1: timedelta = timedelta(days=730)

    @classmethod
    def from_settings(cls, settings: RetentionDays) -> Retention:
        return cls(
            raw=timedelta(days=settings.retention_raw_days),
            m1=timedelta(days=settings.retention_1m_days),
            m5=timedelta(days=settings.retention_5m_days),
            h1=timedelta(days=settings.retention_1h_days),
        )

    def of(self, name: str) -> timedelta:
        window: timedelta = getattr(self, name)
        return window

    def by_relation(self) -> dict[str, timedelta]:
        return {
            "samples": self.raw,
            "events": self.raw,
            **{tier.table: self.of(tier.retention) for tier in TIERS},
        }


@dataclass(frozen=True, slots=True)
class Tier:
    """One rollup tier: rows of min, max, avg, sum, count and last per series and bucket."""

    name: str  # the resolution as queries name it
    table: str
    width: timedelta
    retention: str  # the Retention field that applies
    source: str  # what it is computed from: raw ``samples`` or a finer tier's table


# Finest first; a tier computed from another comes after it. The 5-minute tier reads the 1m
# rollup (5x fewer rows than raw, and kept longer); the 1-hour tier reads raw rows.
TIERS = (
    Tier("1m", "samples_1m", timedelta(minutes=1), "m1", "samples"),
    Tier("5m", "samples_5m", timedelta(minutes=5), "m5", "samples_1m"),
    Tier("1h", "samples_1h", timedelta(hours=1), "h1", "samples"),
)


class CachedValue(msgspec.Struct, frozen=True):
    """The newest value of one series as ingest keeps it in Valkey (JSON, one hash field each).

    The cache's own record: its JSON has the fields of the API's ``LatestValue``, which the API
    decodes from it directly; a test holds the two layouts together.
    """

    host: str
    plugin: str
    instance: str
    name: str
    labels: dict[str, str]
    unit: str
    kind: Literal["gauge", "counter"]
    value: float
    ts: datetime


# Valkey: the latest values, one hash per host and plugin (field: instance|name|labels), the
# epoch of each field beside it, an index of the hashes, and the run marker.
def latest_key(root: str, host: str, plugin: str) -> str:
    return f"{root}:latest:{host}:{plugin}"


def stamps_key(root: str, host: str, plugin: str) -> str:
    """The hash of epoch timestamps beside ``latest_key``: what makes "newest wins" hold."""
    return f"{root}:latest_ts:{host}:{plugin}"


def index_key(root: str) -> str:
    return f"{root}:latest:index"


def run_key(root: str) -> str:
    """The Valkey run in which the latest hashes were complete (readers compare their own)."""
    return f"{root}:latest:run"


# The server's run_id, which changes at every start; scripts may call INFO.
RUN_ID_LUA = "string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')"


# Whether a database took the TimescaleDB path: the extension, then ``samples`` a hypertable (the
# extension alone is not enough: an image's init script may create it after a plain migration).
# Two statements: the second names a view that exists only with the extension.
TIMESCALE_EXTENSION_SQL = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
TIMESCALE_HYPERTABLE_SQL = (
    "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
    "WHERE hypertable_name = 'samples' AND hypertable_schema = current_schema())"
)
