"""Wire messages v1: what producers publish to NATS and ingest reads back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

WIRE_VERSION = 1

Timestamp = Annotated[datetime, msgspec.Meta(tz=True)] | float
"""RFC 3339 with an offset, or seconds since the epoch."""

Kind = Literal["gauge", "counter"]
Status = Literal["ok", "degraded", "error"]
Severity = Literal["debug", "info", "warning", "error", "critical"]


class Sample(msgspec.Struct, frozen=True, omit_defaults=True):
    """One measured value.

    Attributes:
        name: Metric name, e.g. ``cpu_usage_percent``.
        value: The value; must be finite.
        labels: Dimensions of the series, e.g. ``{"cpu": "0"}``.
        unit: Unit in UCUM-like short form (``percent``, ``bytes``, ``seconds``).
        kind: ``gauge`` or ``counter`` (monotonic, rates computed at query time).
        ts: Own timestamp, when it differs from the batch's.
    """

    name: str
    value: float
    labels: dict[str, str] = {}
    unit: str = ""
    kind: Kind = "gauge"
    ts: Timestamp | None = None


class MetricBatch(msgspec.Struct, frozen=True, omit_defaults=True):
    """All samples of one collection run of one plugin instance.

    Published to ``unity.metrics.<host>.<plugin>``.

    Attributes:
        host: Host that was measured.
        plugin: Plugin id.
        samples: The samples.
        instance: Instance name when one plugin runs several times (two UPSes).
        ts: Collection time; when missing, the JetStream publish time is used.
        seq: Producer sequence number, part of the ``Nats-Msg-Id``.
        v: Wire version.
    """

    host: str
    plugin: str
    samples: list[Sample]
    instance: str = ""
    ts: Timestamp | None = None
    seq: int = 0
    v: int = WIRE_VERSION


class HealthReport(msgspec.Struct, frozen=True, omit_defaults=True):
    """Outcome of one plugin run, published to ``unity.health.<host>.<plugin>``."""

    host: str
    plugin: str
    status: Status
    instance: str = ""
    ts: Timestamp | None = None
    message: str = ""
    duration_ms: float = 0.0
    samples: int = 0
    v: int = WIRE_VERSION


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """A structured event, published to ``unity.events.<host>.<plugin>``."""

    host: str
    plugin: str
    kind: str
    instance: str = ""
    ts: Timestamp | None = None
    severity: Severity = "info"
    message: str = ""
    data: dict[str, Any] = {}
    v: int = WIRE_VERSION
