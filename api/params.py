"""Query-string parsing with clear errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from unity.api.errors import ApiError

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# Times outside these bounds are refused rather than computed with: a year-1 end minus a day,
# or a year-9999 end widened to a whole step, overflows datetime.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
TIME_FORMATS = "RFC 3339, epoch seconds, now or -<n>[smhdw]"
_NUMBER = r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$"
# What parse_time accepts, as the OpenAPI document describes it: a fuzzer then tries real
# date-times (years 1 to 9999) and numbers, not only arbitrary text.
TIME_SCHEMA: dict[str, Any] = {
    "type": "string",
    "anyOf": [
        {"format": "date-time"},
        {"pattern": _NUMBER},
        {"pattern": r"^-\d+(\.\d+)?[smhdw]$"},
        {"const": "now"},
        {"const": ""},  # empty: the parameter's default, as when it is left out
    ],
}


def _out_of_range(name: str, shown: str) -> ApiError:
    return ApiError(
        400,
        "bad_time",
        f"{name}={shown} is out of range: times must lie between "
        f"{EARLIEST.isoformat()} and {LATEST.isoformat()}",
    )


def in_range(name: str, value: datetime, raw: str | None = None) -> datetime:
    """``value`` unless it lies outside [EARLIEST, LATEST]: then 400 naming the bounds."""
    if not EARLIEST <= value <= LATEST:
        raise _out_of_range(name, value.isoformat() if raw is None else repr(raw))
    return value


def parse_time(name: str, raw: str | None, default: datetime) -> datetime:
    """RFC 3339, epoch seconds, ``now`` or a relative offset like ``-15m``, within
    [EARLIEST, LATEST]; a default before EARLIEST (``end - 1 day`` for an end at EARLIEST)
    is raised to it."""
    if raw is None or raw == "":
        return max(default, EARLIEST)
    return in_range(name, _parse_time(name, raw), raw)


def _parse_time(name: str, raw: str) -> datetime:
    if raw == "now":
        return datetime.now(UTC)
    try:
        if m := _RELATIVE.match(raw):
            return datetime.now(UTC) - timedelta(seconds=float(m[1]) * _UNITS[m[2]])
        return datetime.fromtimestamp(float(raw), UTC)
    except (OverflowError, OSError):
        raise _out_of_range(name, repr(raw)) from None
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "bad_time", f"{name}={raw!r} is not {TIME_FORMATS}") from None
    if parsed.tzinfo is None:
        raise ApiError(400, "bad_time", f"{name}={raw!r} has no UTC offset")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _out_of_range(name, repr(raw)) from None


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


def parse_bool(name: str, raw: str | None, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ApiError(400, "bad_parameter", f"{name}={raw!r} is not a boolean (true or false)")


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)?$")
DURATION_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"^\d+(\.\d+)?[smhdw]?$"}


def parse_duration(name: str, raw: str | None, default: float) -> float:
    """Seconds from ``90``, ``90s``, ``1m``, ``1h`` ..."""
    if raw is None or raw == "":
        return default
    m = _DURATION.match(raw)
    if m is None:
        raise ApiError(400, "bad_parameter", f"{name}={raw!r} is not a duration like 60s or 1m")
    return float(m[1]) * _UNITS[m[2] or "s"]


MAX_PAGE = 1000
MAX_OFFSET = 10_000_000


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int

    def next_offset(self, fetched: int) -> int | None:
        """Rows are fetched with ``limit + 1``: one more than asked means another page exists."""
        return self.offset + self.limit if fetched > self.limit else None


def parse_page(q: Mapping[str, str], default_limit: int = 100) -> Page:
    limit = parse_int("limit", q.get("limit"), default_limit, 1, MAX_PAGE)
    offset = parse_int("offset", q.get("offset"), 0, 0, MAX_OFFSET)
    return Page(limit, offset)
