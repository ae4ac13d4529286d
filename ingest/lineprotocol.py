"""Influx line protocol (what Telegraf's NATS output sends) mapped onto metric batches.

One line ``measurement,tag=v field=1.5,n=3i,u=4u,ok=true,s="x" 1700000000000000000`` becomes
samples named ``<measurement>_<field>`` with the tags as labels, on host ``tags["host"]`` (else
the host token of the subject) and plugin ``telegraf``. Floats, integers (``i``) and unsigned
integers (``u``) are values; booleans become 1.0 / 0.0; string fields cannot be samples and are
counted in ``LineBatch.strings_skipped``. A line that does not parse is reported with its number
and the rest of the message is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from unity.schemas import MetricBatch, Sample, token

PLUGIN = "telegraf"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.:-]")
_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
_UNESCAPE = re.compile(r"\\(.)")


class LineProtocolError(ValueError):
    """One line is not valid line protocol."""


@dataclass(frozen=True, slots=True)
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | bool | str]
    ts_ns: int | None


@dataclass(slots=True)
class LineBatch:
    """What one message of line protocol turned into."""

    batches: list[MetricBatch] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    strings_skipped: int = 0


def _split(text: str, seps: str, start: int, quotes: bool = False) -> tuple[str, int]:
    """Read up to the first unescaped char in ``seps``; returns (raw token, index of the sep)."""
    i, n = start, len(text)
    in_quotes = False
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            i += 2
            continue
        if quotes and c == '"':
            in_quotes = not in_quotes
        elif not in_quotes and c in seps:
            break
        i += 1
    if in_quotes:
        raise LineProtocolError("unterminated string field")
    return text[start:i], i


def _unescape(raw: str) -> str:
    return _UNESCAPE.sub(r"\1", raw) if "\\" in raw else raw


def _field_value(raw: str) -> float | int | bool | str:
    if not raw:
        raise LineProtocolError("empty field value")
    if raw[0] == '"':
        if len(raw) < 2 or raw[-1] != '"':
            raise LineProtocolError(f"bad string field {raw!r}")
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    last = raw[-1]
    try:
        if last == "i":
            return int(raw[:-1])
        if last == "u":
            value = int(raw[:-1])
            if value < 0:
                raise LineProtocolError(f"negative unsigned field {raw!r}")
            return value
    except ValueError as exc:
        raise LineProtocolError(f"bad integer field {raw!r}") from exc
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    try:
        return float(raw)
    except ValueError as exc:
        raise LineProtocolError(f"bad field value {raw!r}") from exc


def parse_line(line: str) -> Point:
    """Parse one non-empty, non-comment line."""
    head, i = _split(line, " ", 0)
    if i >= len(line):
        raise LineProtocolError("no fields")
    parts: list[str] = []
    j = 0
    while True:
        part, j = _split(head, ",", j)
        parts.append(part)
        if j >= len(head):
            break
        j += 1
    measurement = _unescape(parts[0])
    if not measurement:
        raise LineProtocolError("empty measurement")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        key, eq = _split(part, "=", 0)
        if eq >= len(part) or not key or eq + 1 >= len(part):
            raise LineProtocolError(f"bad tag {part!r}")
        tags[_unescape(key)] = _unescape(part[eq + 1 :])
    fields_raw, k = _split(line, " ", i + 1, quotes=True)
    fields: dict[str, float | int | bool | str] = {}
    pos = 0
    while pos < len(fields_raw):
        pair, end = _split(fields_raw, ",", pos, quotes=True)
        key, eq = _split(pair, "=", 0)
        if eq >= len(pair) or not key:
            raise LineProtocolError(f"bad field {pair!r}")
        fields[_unescape(key)] = _field_value(pair[eq + 1 :])
        pos = end + 1
    if not fields:
        raise LineProtocolError("no fields")
    rest = line[k:].strip()
    ts_ns: int | None = None
    if rest:
        try:
            ts_ns = int(rest)
        except ValueError as exc:
            raise LineProtocolError(f"bad timestamp {rest!r}") from exc
    return Point(measurement, tags, fields, ts_ns)


def _name(*parts: str) -> str:
    name = _NAME_CHARS.sub("_", "_".join(parts))
    return name if name[:1].isalpha() or name[:1] == "_" else f"_{name}"


def to_batches(data: bytes, subject_host: str) -> LineBatch:
    """Parse a message of line protocol into one MetricBatch per host."""
    out = LineBatch()
    by_host: dict[str, list[Sample]] = {}
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        out.errors.append(f"not UTF-8: {exc}")
        return out
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            point = parse_line(line)
        except LineProtocolError as exc:
            out.errors.append(f"line {number}: {exc}")
            continue
        host = token(point.tags.pop("host", "") or subject_host)
        labels = {_name(k): v for k, v in point.tags.items()}
        ts = None if point.ts_ns is None else point.ts_ns / 1e9
        samples = by_host.setdefault(host, [])
        for key, value in point.fields.items():
            if isinstance(value, str):
                out.strings_skipped += 1
                continue
            samples.append(
                Sample(name=_name(point.measurement, key), value=float(value), labels=labels, ts=ts)
            )
    out.batches = [
        MetricBatch(host=host, plugin=PLUGIN, samples=samples)
        for host, samples in by_host.items()
        if samples
    ]
    return out
