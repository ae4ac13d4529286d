"""Query-string parsing with clear errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from api.errors import ApiError

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(name: str, raw: str | None, default: datetime) -> datetime:
    """RFC 3339, epoch seconds, ``now`` or a relative offset like ``-15m``."""
    if raw is None or raw == "":
        return default
    if raw == "now":
        return datetime.now(UTC)
    if m := _RELATIVE.match(raw):
        return datetime.now(UTC) - timedelta(seconds=float(m[1]) * _UNITS[m[2]])
    try:
        return datetime.fromtimestamp(float(raw), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, "bad_time", f"{name}={raw!r} is not RFC 3339, epoch seconds or -<n>[smhdw]"
        ) from None
    if parsed.tzinfo is None:
        raise ApiError(400, "bad_time", f"{name}={raw!r} has no UTC offset")
    return parsed


def parse_int(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be between {low} and {high}")
    return value
