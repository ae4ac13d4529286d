"""Latest values in Valkey: one hash per host and plugin, written in one pipeline per batch."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import valkey.asyncio as valkey

from schemas.api import LatestValue

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LatestValue)


def latest_key(root: str, host: str, plugin: str) -> str:
    return f"{root}:latest:{host}:{plugin}"


def index_key(root: str) -> str:
    return f"{root}:latest:index"


def series_field(value: LatestValue) -> str:
    labels = ",".join(f"{k}={v}" for k, v in sorted(value.labels.items()))
    return f"{value.instance}|{value.name}|{labels}"


async def write_latest(client: valkey.Valkey, root: str, values: Iterable[LatestValue]) -> int:
    """Store values (newest last wins within the call); returns how many were written."""
    grouped: dict[str, dict[str, bytes]] = {}
    newest: dict[tuple[str, str], LatestValue] = {}
    for value in values:
        key = latest_key(root, value.host, value.plugin)
        field = series_field(value)
        seen = newest.get((key, field))
        if seen is None or seen.ts <= value.ts:
            newest[(key, field)] = value
            grouped.setdefault(key, {})[field] = _encoder.encode(value)
    if not grouped:
        return 0
    async with client.pipeline(transaction=False) as pipe:
        for key, mapping in grouped.items():
            pipe.hset(key, mapping=mapping)
        pipe.sadd(index_key(root), *grouped)
        await pipe.execute()
    return sum(len(m) for m in grouped.values())


async def read_latest(
    client: valkey.Valkey, root: str, host: str | None = None, plugin: str | None = None
) -> list[LatestValue]:
    if host is not None and plugin is not None:
        keys = [latest_key(root, host, plugin)]
    else:
        members: set[bytes] = await client.smembers(index_key(root))  # type: ignore[misc]
        keys = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        prefix = latest_key(root, host, "") if host is not None else None
        keys = [
            k
            for k in keys
            if (prefix is None or k.startswith(prefix))
            and (plugin is None or k.rsplit(":", 1)[-1] == plugin)
        ]
    if not keys:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        results = await pipe.execute()
    out: list[LatestValue] = []
    for mapping in results:
        out.extend(_decoder.decode(raw) for raw in mapping.values())
    return out
