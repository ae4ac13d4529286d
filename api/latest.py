"""``GET /latest``: newest values by selector, from Valkey, or PostgreSQL when Valkey is down."""

from __future__ import annotations

import hashlib

import asyncpg
import msgspec
import valkey.asyncio as valkey
from starlette.requests import Request
from starlette.responses import Response
from valkey.exceptions import NoScriptError, ValkeyError

from unity.api import selectors
from unity.api.operation import Operation, Param
from unity.api.params import MAX_OFFSET, Page, parse_page
from unity.api.responses import MsgspecResponse
from unity.api.rows import from_row
from unity.api.state import AppState, state_of
from unity.schemas.api import LatestResponse, LatestSource, LatestValue
from unity.schemas.storage import RUN_ID_LUA, index_key, latest_key, run_key

SELECTOR = Param("selector", "query", {"type": "string"}, 'e.g. cpu_usage_percent{host="nas"}')
LEGACY = (
    Param("host", "query", {"type": "string"}, "shorthand for {host=...}"),
    Param("plugin", "query", {"type": "string"}, "shorthand for {plugin=...}"),
    Param("name", "query", {"type": "string"}, "shorthand for the metric name"),
)
PAGE = (
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
    Param("offset", "query", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}),
)


def request_selector(request: Request) -> selectors.Selector:
    """The ``selector`` parameter plus the ``host``, ``plugin`` and ``name`` shorthands."""
    q = request.query_params
    selector = selectors.parse(q.get("selector"))
    for key in ("host", "plugin", "name"):
        selector = selector.with_equal(key, q.get(key))
    return selector


# The values of the hashes under a key prefix (or of one hash) in one round trip: the index,
# then every matching hash, in a script; reading the index first and the hashes in a pipeline
# after it took two, with valkey-py's per-command work for each hash. Nothing (nil) when the
# hashes are not marked complete in this Valkey run: it restarted with older data than
# PostgreSQL's, and ingest has not refreshed it yet (ingest.cache).
_READ = f"""
if redis.call('GET', KEYS[2]) ~= {RUN_ID_LUA} then return false end
local prefix, one, suffix = ARGV[1], ARGV[2], ARGV[3]
local out = {{}}
local function take(key)
  for _, value in ipairs(redis.call('HVALS', key)) do out[#out + 1] = value end
end
if one ~= '' then
  take(one)
else
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if string.sub(key, 1, #prefix) == prefix
        and (suffix == '' or string.sub(key, -#suffix) == suffix) then
      take(key)
    end
  end
end
return out
"""


class NotCurrent(LookupError):
    """Valkey restarted and ingest has not refreshed its latest values yet."""


_READ_SHA = hashlib.sha1(_READ.encode()).hexdigest()  # noqa: S324 -- the script's cache key
_values = msgspec.json.Decoder(list[LatestValue])


async def read_values(
    client: valkey.Valkey, root: str, host: str | None, plugin: str | None
) -> list[LatestValue]:
    """The values in the hashes of ``host`` and ``plugin`` (None: any), as ``read_latest``
    finds them; a host's key prefix also takes in hosts named ``host:...``, which the
    selector leaves out afterwards. Raises NotCurrent while they are not known complete."""
    one = latest_key(root, host, plugin) if host is not None and plugin is not None else ""
    prefix = latest_key(root, host, "") if host is not None else ""
    suffix = f":{plugin}" if plugin is not None else ""
    args = (index_key(root), run_key(root), prefix, one, suffix)
    try:
        raw: list[bytes] | None = await client.evalsha(_READ_SHA, 2, *args)  # type: ignore[misc]
    except NoScriptError:  # first use on this server, or its script cache was flushed
        raw = await client.eval(_READ, 2, *args)  # type: ignore[misc]
    if raw is None:
        raise NotCurrent(f"valkey's latest values under {root!r} await a refresh")
    # One decode for all: the cache's records (schemas.storage.CachedValue) have LatestValue's
    # fields, so they decode straight into the API's body type.
    return _values.decode(b"[" + b",".join(raw) + b"]")


def _order(item: LatestValue) -> tuple[str, str, str, str, list[tuple[str, str]]]:
    return (item.host, item.plugin, item.instance, item.name, sorted(item.labels.items()))


async def latest_values(
    st: AppState, selector: selectors.Selector
) -> tuple[LatestSource, list[LatestValue]]:
    """All matching values and where they came from (``valkey`` or ``postgres``)."""
    try:
        items = await read_values(
            st.valkey, st.settings.subjects.root, selector.equal("host"), selector.equal("plugin")
        )
    except (ValkeyError, OSError, NotCurrent):
        st.metrics.latest_fallbacks += 1
        return "postgres", await _from_postgres(st.pool, selector)
    items = [i for i in items if selector.matches(i)]
    items.sort(key=_order)
    return "valkey", items


async def latest(request: Request) -> Response:
    st = state_of(request)
    page: Page = parse_page(request.query_params, default_limit=1000)
    source, items = await latest_values(st, request_selector(request))
    chosen = items[page.offset : page.offset + page.limit + 1]
    return MsgspecResponse(
        LatestResponse(source, chosen[: page.limit], page.next_offset(len(chosen)))
    )


async def _from_postgres(pool: asyncpg.Pool, selector: selectors.Selector) -> list[LatestValue]:
    where, params = selector.sql(1)
    rows = await pool.fetch(
        f"""
        SELECT s.host, s.plugin, s.instance, s.name, s.labels::text AS labels, s.unit, s.kind,
               l.time AS ts, l.value
        FROM series s
        CROSS JOIN LATERAL (
            SELECT time, value FROM samples WHERE series_id = s.id ORDER BY time DESC LIMIT 1
        ) l
        WHERE {where}
        ORDER BY s.host, s.plugin, s.instance, s.name, s.labels
        """,  # noqa: S608 -- the selector compiles to placeholders; values are bind parameters
        *params,
    )
    return [from_row(LatestValue, r) for r in rows]


OPERATIONS = [
    Operation(
        "GET",
        "/latest",
        latest,
        "Newest value of every series matching a selector (source says valkey or postgres)",
        "data",
        "read",
        params=(SELECTOR, *LEGACY, *PAGE),
        response=LatestResponse,
    ),
]
