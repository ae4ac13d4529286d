"""Bodies of the HTTP API, reusing the wire types."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from schemas.wire import Kind


class LatestValue(msgspec.Struct, frozen=True):
    """The newest value of one series."""

    host: str
    plugin: str
    instance: str
    name: str
    labels: dict[str, str]
    unit: str
    kind: Kind
    value: float
    ts: datetime


class LatestResponse(msgspec.Struct, frozen=True):
    """``source`` says where the values came from: ``valkey``, or ``postgres`` as the fallback."""

    source: Literal["valkey", "postgres"]
    items: list[LatestValue]


class SeriesPoints(msgspec.Struct, frozen=True):
    """One series and its points as ``[epoch_seconds, value]`` pairs."""

    id: int
    host: str
    plugin: str
    instance: str
    name: str
    labels: dict[str, str]
    unit: str
    kind: Kind
    points: list[tuple[float, float]]


class QueryResponse(msgspec.Struct, frozen=True):
    start: datetime
    end: datetime
    series: list[SeriesPoints]


class Check(msgspec.Struct, frozen=True, omit_defaults=True):
    status: Literal["ok", "error"]
    message: str = ""
    latency_ms: float = 0.0


class HealthResponse(msgspec.Struct, frozen=True):
    status: Literal["ok", "degraded"]
    checks: dict[str, Check]


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail
