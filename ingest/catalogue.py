"""The series catalogue: identity -> id, cached in memory, new series created in bulk."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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


class Catalogue:
    """Resolves series identities to ids; safe when several workers create one series at once."""

    def __init__(self) -> None:
        self._ids: dict[SeriesKey, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def cached(self, key: SeriesKey) -> int | None:
        return self._ids.get(key)

    async def resolve(self, conn: asyncpg.Connection, specs: Iterable[SeriesSpec]) -> None:
        """Make sure every spec has an id in the cache: one round trip for all the new ones."""
        missing: dict[SeriesKey, SeriesSpec] = {}
        for spec in specs:
            if spec.key not in self._ids and spec.key not in missing:
                missing[spec.key] = spec
        if not missing:
            return
        columns: list[list[str]] = [[], [], [], [], [], [], []]
        for spec in missing.values():
            k = spec.key
            for column, value in zip(
                columns,
                (k.host, k.plugin, k.instance, k.name, k.labels, spec.unit, spec.kind),
                strict=True,
            ):
                column.append(value)
        rows = await conn.fetch(_UPSERT, *columns)
        for row in rows:
            key = SeriesKey(
                row["host"],
                row["plugin"],
                row["instance"],
                row["name"],
                canonical_labels(json.loads(row["labels"])),
            )
            self._ids[key] = row["id"]

    def id_of(self, key: SeriesKey) -> int:
        return self._ids[key]
