"""Wire messages v1: what producers publish to NATS and ingest reads back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "WIRE_VERSION",
    "Event",
    "HealthReport",
    "Kind",
    "MetricBatch",
    "Sample",
    "Severity",
    "Status",
    "Timestamp",
]

WIRE_VERSION = 1
"""The newest wire version. The ``v`` field defaults to 1 forever: a message without ``v`` is v1;
a producer of a later version writes ``v`` explicitly."""

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
        v: Wire version; absent means 1.
    """

    host: str
    plugin: str
    samples: list[Sample]
    instance: str = ""
    ts: Timestamp | None = None
    seq: int = 0
    v: int = 1


class HealthReport(msgspec.Struct, frozen=True, omit_defaults=True):
    """Outcome of one plugin run, published to ``unity.health.<host>.<plugin>``.

    Attributes:
        host: Host the plugin ran on.
        plugin: Plugin id.
        status: ``ok``, ``degraded`` (ran, but something is off) or ``error`` (no data).
        instance: Instance name.
        ts: Start of the run; when missing, the JetStream publish time is used.
        message: Why the status is not ``ok``.
        duration_ms: How long the run took.
        samples: Samples the run published.
        v: Wire version; absent means 1.
    """

    host: str
    plugin: str
    status: Status
    instance: str = ""
    ts: Timestamp | None = None
    message: str = ""
    duration_ms: float = 0.0
    samples: int = 0
    v: int = 1


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """A structured event, published to ``unity.events.<host>.<plugin>``.

    Attributes:
        host: Host the event is about.
        plugin: Plugin id.
        kind: What happened, in the metric-name alphabet (``power_lost``, ``inventory``).
        instance: Instance name.
        ts: When it happened; when missing, the JetStream publish time is used.
        severity: ``debug``, ``info``, ``warning``, ``error`` or ``critical``.
        message: One human line.
        data: Free JSON: the document (an inventory, the matched lines).
        v: Wire version; absent means 1.
    """

    host: str
    plugin: str
    kind: str
    instance: str = ""
    ts: Timestamp | None = None
    severity: Severity = "info"
    message: str = ""
    data: dict[str, Any] = {}
    v: int = 1
