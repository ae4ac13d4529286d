"""Latest values in Valkey: one hash per host and plugin, written in one script call per batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import msgspec
import valkey.asyncio as valkey
from valkey.exceptions import ValkeyError

from unity.schemas.api import LatestValue
from unity.schemas.storage import index_key, latest_key, stamps_key

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LatestValue)


def series_field(value: LatestValue) -> str:
    labels = ",".join(f"{k}={v}" for k, v in sorted(value.labels.items()))
    return f"{value.instance}|{value.name}|{labels}"


# Several pullers and workers commit batches in any order: a value is written only when it is
# not older than the one stored, compared on the epoch kept in the stamps hash.
_NEWER_WINS = """
local written = 0
for i = 1, #ARGV, 5 do
  local key, stamps, field, ts = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local held = redis.call('HGET', stamps, field)
  if (not held) or tonumber(held) <= tonumber(ts) then
    redis.call('HSET', key, field, ARGV[i + 4])
    redis.call('HSET', stamps, field, ts)
    redis.call('SADD', KEYS[1], key)
    written = written + 1
  end
end
return written
"""


async def write_latest(client: valkey.Valkey, root: str, values: Iterable[LatestValue]) -> int:
    """Store each value unless Valkey holds a newer one; returns how many were written."""
    newest: dict[tuple[str, str], LatestValue] = {}
    for value in values:
        slot = (latest_key(root, value.host, value.plugin), series_field(value))
        seen = newest.get(slot)
        if seen is None or seen.ts <= value.ts:
            newest[slot] = value
    if not newest:
        return 0
    args: list[str | bytes] = []
    for (key, field), value in newest.items():
        stamps = stamps_key(root, value.host, value.plugin)
        args += [key, stamps, field, repr(value.ts.timestamp()), _encoder.encode(value)]
    script = client.register_script(_NEWER_WINS)
    written: int = await script(keys=[index_key(root)], args=args)
    return written


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


class LatestCache:
    """Writes latest values after each commit; rides out a Valkey outage without losing any.

    While Valkey fails, the newest value of every series waits here (one entry per series, so
    the memory is bounded by the catalogue) and the next attempt waits 1, 2, 4 ... 30 s; the
    first write that succeeds refreshes everything that waited.
    """

    def __init__(self, client: valkey.Valkey, root: str, max_backoff: float = 30.0) -> None:
        self._client = client
        self._root = root
        self._max_backoff = max_backoff
        self._waiting: dict[tuple[str, str], LatestValue] = {}
        self._backoff = 0.0
        self._next_try = 0.0
        self.failures = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def update(self, values: Iterable[LatestValue]) -> bool:
        """Queue ``values`` and write all that wait, unless backing off; True when written."""
        for value in values:
            key = (latest_key(self._root, value.host, value.plugin), series_field(value))
            held = self._waiting.get(key)
            if held is None or held.ts <= value.ts:
                self._waiting[key] = value
        if not self._waiting or time.monotonic() < self._next_try:
            return False
        try:
            await write_latest(self._client, self._root, self._waiting.values())
        except (ValkeyError, OSError) as exc:
            self.failures += 1
            self._backoff = min(max(self._backoff * 2, 1.0), self._max_backoff)
            self._next_try = time.monotonic() + self._backoff
            log.warning(
                "valkey update failed (%s); %d series wait, next try in %.0fs",
                exc,
                len(self._waiting),
                self._backoff,
            )
            return False
        if self._backoff:
            log.info("valkey is back: refreshed %d series", len(self._waiting))
        self._waiting.clear()
        self._backoff = 0.0
        self._next_try = 0.0
        return True
