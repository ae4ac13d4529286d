"""The series catalogue: identity -> id, cached in memory, new series created in bulk."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

_labels_encoder = msgspec.json.Encoder(order="sorted")


def canonical_labels(labels: Mapping[str, str]) -> str:
    return _labels_encoder.encode(labels).decode()


@dataclass(frozen=True, slots=True)
class SeriesKey:
    host: str
    plugin: str
    instance: str
    name: str
    labels: str  # canonical JSON


# (host, plugin, instance, name, *label items in the producer's order): built without sorting;
# two orders of the same labels are two keys for the same id.
FastKey = tuple[Any, ...]
Unresolved = list[tuple[int, FastKey, "SeriesSpec"]]


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    key: SeriesKey
    unit: str
    kind: str


_UPSERT = """
INSERT INTO series AS s (host, plugin, instance, name, labels, unit, kind)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                     $6::text[], $7::text[])
ON CONFLICT ON CONSTRAINT series_identity DO UPDATE SET last_seen = now()
RETURNING id, host, plugin, instance, name, labels::text
"""


def _order(spec: SeriesSpec) -> tuple[str, str, str, str, str]:
    k = spec.key
    return (k.host, k.plugin, k.instance, k.name, k.labels)


class Catalogue:
    """Resolves series identities to ids; safe when several workers create one series at once.

    Ids learnt inside a transaction enter the cache only through ``learn`` after the commit, so
    a rolled-back insert never leaves an id behind.
    """

    def __init__(self) -> None:
        self._ids: dict[SeriesKey, int] = {}
        self.fast: dict[FastKey, int] = {}

    async def resolve(
        self, conn: asyncpg.Connection, specs: Iterable[SeriesSpec]
    ) -> dict[SeriesKey, int]:
        """Ids of every spec: one round trip creates or finds all the uncached ones."""
        found: dict[SeriesKey, int] = {}
        missing: dict[SeriesKey, SeriesSpec] = {}
        for spec in specs:
            sid = self._ids.get(spec.key)
            if sid is not None:
                found[spec.key] = sid
            elif spec.key not in missing:
                missing[spec.key] = spec
        if not missing:
            return found
        columns: list[list[str]] = [[], [], [], [], [], [], []]
        # Sorted, so that two workers creating the same series lock rows in the same order.
        for spec in sorted(missing.values(), key=_order):
            k = spec.key
            for column, value in zip(
                columns,
                (k.host, k.plugin, k.instance, k.name, k.labels, spec.unit, spec.kind),
                strict=True,
            ):
                column.append(value)
        for row in await conn.fetch(_UPSERT, *columns):
            labels = canonical_labels(json.loads(row["labels"]))
            key = SeriesKey(row["host"], row["plugin"], row["instance"], row["name"], labels)
            found[key] = row["id"]
        return found

    def learn(self, ids: Mapping[SeriesKey, int], unresolved: Unresolved) -> None:
        """Cache ids once the transaction that created them has committed."""
        self._ids.update(ids)
        for _, fast_key, spec in unresolved:
            self.fast[fast_key] = ids[spec.key]
