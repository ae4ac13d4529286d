"""Response bodies from database rows: columns selected as ``json::text`` are decoded on the way."""

from __future__ import annotations

from typing import Any, TypeVar

import asyncpg
import msgspec

T = TypeVar("T")

_json = msgspec.json.Decoder()


def from_row(
    type_: type[T], row: asyncpg.Record, json_columns: tuple[str, ...] = ("labels",), **extra: Any
) -> T:
    data = dict(row)
    for column in json_columns:
        data[column] = _json.decode(data[column])
    data.update(extra)
    return msgspec.convert(data, type_)
