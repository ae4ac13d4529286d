"""Latest values in Valkey: one hash per host and plugin, written in one script call per batch.

A Valkey that restarts comes back with whatever it last saved (or nothing), older than what
PostgreSQL holds. The key ``run_key`` names the Valkey run (its ``run_id``) in which the hashes
were last made complete; while it names another run, readers use PostgreSQL, and ingest's next
write refreshes every series from PostgreSQL and then marks the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import asyncpg
import msgspec
import valkey.asyncio as valkey
from valkey.exceptions import ValkeyError

from unity.schemas.storage import (
    RUN_ID_LUA,
    CachedValue,
    index_key,
    latest_key,
    run_key,
    stamps_key,
)

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CachedValue)


def series_field(value: CachedValue) -> str:
    labels = ",".join(f"{k}={v}" for k, v in sorted(value.labels.items()))
    return f"{value.instance}|{value.name}|{labels}"


# Several pullers and workers commit batches in any order: a value is written only when it is
# not older than the one stored, compared on the epoch kept in the stamps hash. Returns how many
# were written, this Valkey's run and whether the hashes are marked complete in it.
_NEWER_WINS = f"""
local run = {RUN_ID_LUA}
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
return {{written, run, redis.call('GET', KEYS[2]) == run and 1 or 0}}
"""
_MARK = f"""
local run = {RUN_ID_LUA}
if run == ARGV[1] then redis.call('SET', KEYS[1], run) return 1 end
return 0
"""


async def write_latest(client: valkey.Valkey, root: str, values: Iterable[CachedValue]) -> int:
    """Store each value unless Valkey holds a newer one, and declare the hashes complete;
    returns how many were written."""
    written, run, _ = await _write(client, root, values)
    await _mark(client, root, run)
    return written


async def _mark(client: valkey.Valkey, root: str, run: str) -> bool:
    """Mark the hashes complete in Valkey run ``run``; False when Valkey restarted since."""
    done: int = await client.register_script(_MARK)(keys=[run_key(root)], args=[run])
    return bool(done)


async def _write(
    client: valkey.Valkey, root: str, values: Iterable[CachedValue]
) -> tuple[int, str, bool]:
    """Write as ``write_latest`` does; returns (written, Valkey's run, marked complete)."""
    newest: dict[tuple[str, str], CachedValue] = {}
    for value in values:
        slot = (latest_key(root, value.host, value.plugin), series_field(value))
        seen = newest.get(slot)
        if seen is None or seen.ts <= value.ts:
            newest[slot] = value
    args: list[str | bytes] = []
    for (key, field), value in newest.items():
        stamps = stamps_key(root, value.host, value.plugin)
        args += [key, stamps, field, repr(value.ts.timestamp()), _encoder.encode(value)]
    script = client.register_script(_NEWER_WINS)
    written, run, marked = await script(keys=[index_key(root), run_key(root)], args=args)
    return int(written), run.decode() if isinstance(run, bytes) else str(run), bool(marked)


_LOAD = """
SELECT s.host, s.plugin, s.instance, s.name, s.labels::text AS labels, s.unit, s.kind,
       l.time AS ts, l.value
FROM series s
CROSS JOIN LATERAL (
    SELECT time, value FROM samples WHERE series_id = s.id ORDER BY time DESC LIMIT 1
) l
"""
_labels = msgspec.json.Decoder(dict[str, str])


async def load_latest(pool: asyncpg.Pool) -> list[CachedValue]:
    """The newest stored sample of every series, as Valkey holds them."""
    rows = await pool.fetch(_LOAD)
    return [
        CachedValue(
            host=r["host"],
            plugin=r["plugin"],
            instance=r["instance"],
            name=r["name"],
            labels=_labels.decode(r["labels"]),
            unit=r["unit"],
            kind=r["kind"],
            value=r["value"],
            ts=r["ts"],
        )
        for r in rows
    ]


async def read_latest(
    client: valkey.Valkey, root: str, host: str | None = None, plugin: str | None = None
) -> list[CachedValue]:
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
    out: list[CachedValue] = []
    for mapping in results:
        out.extend(_decoder.decode(raw) for raw in mapping.values())
    return out


Loader = Callable[[], Awaitable[list[CachedValue]]]


class LatestCache:
    """Writes latest values after each commit; rides out a Valkey outage without losing any.

    While Valkey fails, the newest value of every series waits here (one entry per series, so
    the memory is bounded by the catalogue) and the next attempt waits 1, 2, 4 ... 30 s; the
    first write that succeeds refreshes everything that waited. A write that finds Valkey in a
    run not marked complete (it restarted) starts a reload of every series with ``load``, in
    the background: readers use PostgreSQL until it is done.
    """

    def __init__(
        self,
        client: valkey.Valkey,
        root: str,
        max_backoff: float = 30.0,
        load: Loader | None = None,
    ) -> None:
        self._client = client
        self._root = root
        self._max_backoff = max_backoff
        self._load = load
        self._waiting: dict[tuple[str, str], CachedValue] = {}
        self._backoff = 0.0
        self._next_try = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self.failures = 0
        self.refreshes = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def update(self, values: Iterable[CachedValue]) -> bool:
        """Queue ``values`` and write all that wait, unless backing off; True when written."""
        for value in values:
            key = (latest_key(self._root, value.host, value.plugin), series_field(value))
            held = self._waiting.get(key)
            if held is None or held.ts <= value.ts:
                self._waiting[key] = value
        if not self._waiting or time.monotonic() < self._next_try:
            return False
        try:
            _, run, marked = await _write(self._client, self._root, self._waiting.values())
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
        if not marked:
            self._start_refresh(run)
        return True

    async def check(self) -> None:
        """Start a refresh if Valkey restarted since its hashes were marked complete (at start,
        and from the report loop while no data comes). Not while backing off after a failure:
        the next update's write finds the restart and flushes what waits first."""
        if time.monotonic() < self._next_try:
            return
        try:
            _, run, marked = await _write(self._client, self._root, ())
        except (ValkeyError, OSError) as exc:
            log.warning("valkey check failed (%s); the next write tries again", exc)
            return
        if not marked:
            self._start_refresh(run)

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refreshing

    def _start_refresh(self, run: str) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh(run))

    async def _refresh(self, run: str) -> None:
        """Write the newest stored value of every series into Valkey run ``run``, then mark it
        complete. Batches committed meanwhile write newer values, which the older ones of the
        reload do not replace."""
        try:
            values = await self._load() if self._load is not None else []
            written, now, marked = await _write(self._client, self._root, values)
            if not marked and now == run and await _mark(self._client, self._root, run):
                self.refreshes += 1
                log.info("valkey run %s: refreshed %d series from postgresql", run[:8], written)
        except Exception as exc:  # PostgreSQL or Valkey down: readers keep using PostgreSQL
            log.warning("refreshing valkey from postgresql failed (%s); retried later", exc)
