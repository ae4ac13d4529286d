"""Unity series as Prometheus label sets, and Prometheus matchers as SQL over ``series``.

A series ``(host, plugin, instance, name, labels)`` becomes ``{__name__=name, host=host,
plugin=plugin, instance=instance, **labels}``; an empty instance is no label (Prometheus has no
empty labels). A series label that clashes with one of those columns is shown as
``exported_<key>`` (Prometheus's own rule for a scraped label that clashes with a target label):
``host`` and ``plugin`` always clash, ``instance`` only when the series has an instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

Labels = tuple[tuple[str, str], ...]
NAME = "__name__"
EXPORTED = "exported_"

_decoder = msgspec.json.Decoder(dict[str, str])


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str  # "=", "!=", "=~" or "!~"
    value: str


def labels_of(
    host: str, plugin: str, instance: str, name: str, labels: Mapping[str, str]
) -> Labels:
    """The Prometheus label set of a series, sorted by label name."""
    out = {NAME: name, "host": host, "plugin": plugin}
    if instance:
        out["instance"] = instance
    for key, value in labels.items():
        if not value:
            continue
        out[f"{EXPORTED}{key}" if key in out or key == NAME else key] = value
    return tuple(sorted(out.items()))


def labels_of_row(row: Sequence[object]) -> Labels:
    """``labels_of`` for a row ``(id, host, plugin, instance, name, labels as JSON text)``."""
    raw = row[5]
    labels = _decoder.decode(raw) if isinstance(raw, str | bytes) else {}
    return labels_of(str(row[1]), str(row[2]), str(row[3]), str(row[4]), labels)


def _column(name: str, args: list[str], alias: str) -> str:
    """The SQL expression whose text a Prometheus label ``name`` has on a series row."""
    s = alias
    if name == NAME:
        return f"{s}.name"
    if name in ("host", "plugin"):
        return f"{s}.{name}"
    if name == "instance":
        fallback = _label("instance", args, s)
        return f"(CASE WHEN {s}.instance <> '' THEN {s}.instance ELSE {fallback} END)"
    if name.startswith(EXPORTED):
        key = name[len(EXPORTED) :]
        if key in ("host", "plugin", NAME):
            return _label(key, args, s)
        if key == "instance":
            return f"(CASE WHEN {s}.instance <> '' THEN {_label('instance', args, s)} ELSE '' END)"
    return _label(name, args, s)


def _label(key: str, args: list[str], alias: str) -> str:
    args.append(key)
    return f"coalesce({alias}.labels ->> ${len(args)}, '')"


def where(matchers: Sequence[Matcher], args: list[str], alias: str = "s") -> str:
    """A WHERE fragment over ``series`` for ``matchers``; appends its parameters to ``args``.

    Regexes are anchored as Prometheus anchors them; a missing label equals the empty string.
    """
    parts: list[str] = []
    for m in matchers:
        column = _column(m.name, args, alias)
        if m.op in ("=~", "!~"):
            args.append(f"^(?:{m.value})$")
            sql_op = "~" if m.op == "=~" else "!~"
        else:
            args.append(m.value)
            sql_op = "=" if m.op == "=" else "<>"
        parts.append(f"{column} {sql_op} ${len(args)}")
    return " AND ".join(parts) or "TRUE"
