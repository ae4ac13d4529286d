"""Bodies of the HTTP API (``/api/v1``), reusing the wire types.

Evolution follows the wire rules: new fields get defaults, no field changes type. Request bodies
forbid unknown fields (a typo is an error, not a silent no-op); responses may grow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from unity.schemas.plugin import MetricInfo
from unity.schemas.wire import Kind, Status

Scope = Literal["read", "write", "admin"]
Source = Literal["builtin", "registered", "discovered"]
LatestSource = Literal["valkey", "postgres"]


class SeriesIdentity(msgspec.Struct, frozen=True):
    """What names a series, and its unit and kind; the bodies below that describe a series
    extend it."""

    host: str
    plugin: str
    instance: str
    name: str
    labels: dict[str, str]
    unit: str
    kind: Kind


class LatestValue(SeriesIdentity, frozen=True):
    """The newest value of one series."""

    value: float
    ts: datetime


class LatestResponse(msgspec.Struct, frozen=True):
    """Newest values matching a selector.

    Attributes:
        source: Where the values came from: ``valkey``, or ``postgres`` when Valkey is down.
        items: The values, ordered by host, plugin, instance, name and labels.
        next_offset: Offset of the next page, or null on the last page.
    """

    source: LatestSource
    items: list[LatestValue]
    next_offset: int | None = None


class SeriesPoints(SeriesIdentity, frozen=True):
    """One series and its points as ``[epoch_seconds, value]`` pairs."""

    id: int
    points: list[tuple[float, float]]


class QueryResponse(msgspec.Struct, frozen=True):
    """History of the series matching a selector.

    Attributes:
        start: Inclusive start of the range.
        end: Exclusive end of the range.
        series: One entry per series with its points.
        step_s: Bucket width in seconds; 0 means raw points.
        agg: Aggregation applied within each bucket.
        rate: Whether counters were turned into a per-second rate.
        resolution: Which table answered: ``raw``, ``1m``, ``5m`` or ``1h``.
    """

    start: datetime
    end: datetime
    series: list[SeriesPoints]
    step_s: float = 0.0
    agg: str = "avg"
    rate: bool = False
    resolution: str = "raw"


class Check(msgspec.Struct, frozen=True, omit_defaults=True):
    """Outcome of one dependency check."""

    status: Literal["ok", "error"]
    message: str = ""
    latency_ms: float = 0.0


class HealthResponse(msgspec.Struct, frozen=True):
    """Liveness of the API and its connections."""

    status: Literal["ok", "degraded"]
    checks: dict[str, Check]


class ConsumerLag(msgspec.Struct, frozen=True):
    """State of one durable ingest consumer.

    Attributes:
        stream: The stream it reads.
        pending: Messages in the stream not yet delivered to it.
        ack_pending: Messages delivered and not yet acknowledged.
        redelivered: Messages delivered more than once and still unacknowledged.
    """

    stream: str
    pending: int
    ack_pending: int
    redelivered: int


class ReadyResponse(msgspec.Struct, frozen=True):
    """Readiness: every dependency with its status, and the ingest consumers' lag."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]
    consumers: list[ConsumerLag]


class ErrorDetail(msgspec.Struct, frozen=True):
    """A machine-readable ``code`` and a one-line ``message``."""

    code: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error response: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class PluginInfo(msgspec.Struct, frozen=True):
    """One registry entry: a plugin instance on a host.

    Attributes:
        id: Registry id, used in ``/plugins/{id}``.
        source: ``builtin`` (run by a Unity collector), ``registered`` (over HTTP) or
            ``discovered`` (seen on NATS only).
        external: Runs outside Unity's collector (any language, Telegraf, scripts).
        interval_s: Collection interval; null means the collector's default.
        config_revision: Bumped by every config, enable or interval change.
        health: Status of the last run, null before the first.
    """

    id: int
    host: str
    plugin: str
    instance: str
    name: str
    version: str
    description: str
    author: str
    category: str
    tags: list[str]
    source: Source
    external: bool
    enabled: bool
    interval_s: float | None
    config_revision: int
    metrics: list[MetricInfo]
    health: Status | None
    health_message: str
    health_at: datetime | None
    last_seen: datetime | None
    created_at: datetime
    updated_at: datetime


class PluginList(msgspec.Struct, frozen=True):
    """A page of registry entries."""

    items: list[PluginInfo]
    next_offset: int | None = None


# The collection intervals the registry accepts, stated in the schema (the registry checks them
# itself, with its own error code).
IntervalS = Annotated[float, msgspec.Meta(extra_json_schema={"minimum": 0.05, "maximum": 86400})]


class PluginRegistration(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /plugins``: an external plugin announcing itself.

    Registering again updates the entry (plugins may register at every start). A new entry
    stores ``config`` (``{}`` when absent), which must satisfy ``config_schema``. Afterwards
    ``PUT /plugins/{id}/config`` changes it, and registering again keeps it while it satisfies
    the registered schema; when it does not, the registration's ``config`` replaces it, and
    without one the registration is refused (422).
    """

    host: str
    plugin: str
    instance: str = ""
    name: str = ""
    version: str = ""
    description: str = ""
    author: str = ""
    category: str = ""
    tags: list[str] = []
    metrics: list[MetricInfo] = []
    config_schema: dict[str, Any] = {}
    config: dict[str, Any] | None = None
    interval_s: IntervalS | None = None
    enabled: bool = True


class PluginPatch(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """Body of ``PATCH /plugins/{id}``: only the fields present change."""

    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    category: str | UnsetType = UNSET
    tags: list[str] | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET
    interval_s: IntervalS | UnsetType | None = UNSET
    config_schema: dict[str, Any] | UnsetType = UNSET


class PluginConfig(msgspec.Struct, frozen=True):
    """A plugin's live settings, as stored and as published to the KV bucket."""

    config: dict[str, Any]
    config_schema: dict[str, Any]
    revision: int
    enabled: bool
    interval_s: float | None


class ConfigUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``PUT /plugins/{id}/config``.

    Attributes:
        config: The new config; validated against the plugin's JSON Schema.
        revision: When given, the update applies only if the stored revision is still this one.
    """

    config: dict[str, Any]
    revision: int | None = None


class PluginRun(msgspec.Struct, frozen=True):
    """One run of a plugin instance, from its health report."""

    time: datetime
    status: Status
    message: str
    duration_ms: float
    samples: int


class RunList(msgspec.Struct, frozen=True):
    """A page of runs, newest first."""

    items: list[PluginRun]
    next_offset: int | None = None


class PluginHealth(msgspec.Struct, frozen=True):
    """Current health of a plugin instance and its run outcomes over a window."""

    status: Status | None
    message: str
    at: datetime | None
    last_seen: datetime | None
    window_s: float
    runs: dict[str, int]


class HostInfo(msgspec.Struct, frozen=True):
    """Overview of one host.

    Attributes:
        health: Worst health among its plugins, null when none reported.
    """

    host: str
    last_seen: datetime | None
    plugins: list[str]
    series: int
    health: Status | None


class HostList(msgspec.Struct, frozen=True):
    """A page of hosts."""

    items: list[HostInfo]
    next_offset: int | None = None


class SeriesInfo(SeriesIdentity, frozen=True):
    """One series of the catalogue."""

    id: int
    first_seen: datetime
    last_seen: datetime


class SeriesList(msgspec.Struct, frozen=True):
    """A page of series."""

    items: list[SeriesInfo]
    next_offset: int | None = None


class EventItem(msgspec.Struct, frozen=True):
    """A stored event."""

    time: datetime
    host: str
    plugin: str
    instance: str
    kind: str
    severity: str
    message: str
    data: dict[str, Any]


class EventList(msgspec.Struct, frozen=True):
    """A page of events, newest first."""

    items: list[EventItem]
    next_offset: int | None = None


class StreamSample(msgspec.Struct, frozen=True, omit_defaults=True):
    """One sample inside a live stream event."""

    name: str
    value: float
    labels: dict[str, str] = {}
    unit: str = ""
    kind: Kind = "gauge"
    ts: datetime | None = None


class StreamBatch(msgspec.Struct, frozen=True):
    """Data of one ``sample`` event on ``/stream``: the matching samples of one batch.

    The SSE ``id`` is the JetStream stream sequence, so ``Last-Event-ID`` resumes after it.
    """

    host: str
    plugin: str
    instance: str
    ts: datetime
    samples: list[StreamSample]


class TokenInfo(msgspec.Struct, frozen=True):
    """An API token without its secret."""

    id: int
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class IndexLink(msgspec.Struct, frozen=True):
    """One endpoint of the API: where it is, what it does, which scope it needs (None: open)."""

    method: str
    href: str
    summary: str
    scope: Scope | None


class ApiIndex(msgspec.Struct, frozen=True):
    """``GET /api/v1/``: what is there, for a person who opened the URL `unity up` printed."""

    name: str
    version: str
    reference: str
    openapi: str
    health: str
    auth: str
    endpoints: list[IndexLink]
