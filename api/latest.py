"""``GET /latest``: newest values by selector, from Valkey, or PostgreSQL when Valkey is down."""

from __future__ import annotations

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from valkey.exceptions import ValkeyError

from api import selectors
from api.operation import Operation, Param
from api.params import Page, parse_page
from api.responses import MsgspecResponse
from api.rows import from_row
from api.state import AppState, state_of
from ingest.cache import read_latest
from schemas.api import LatestResponse, LatestSource, LatestValue

SELECTOR = Param("selector", "query", {"type": "string"}, 'e.g. cpu_usage_percent{host="nas"}')
LEGACY = (
    Param("host", "query", {"type": "string"}, "shorthand for {host=...}"),
    Param("plugin", "query", {"type": "string"}, "shorthand for {plugin=...}"),
    Param("name", "query", {"type": "string"}, "shorthand for the metric name"),
)
PAGE = (
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
    Param("offset", "query", {"type": "integer", "minimum": 0}),
)


def request_selector(request: Request) -> selectors.Selector:
    """The ``selector`` parameter plus the ``host``, ``plugin`` and ``name`` shorthands."""
    q = request.query_params
    selector = selectors.parse(q.get("selector"))
    for key in ("host", "plugin", "name"):
        selector = selector.with_equal(key, q.get(key))
    return selector


def _order(item: LatestValue) -> tuple[str, str, str, str, list[tuple[str, str]]]:
    return (item.host, item.plugin, item.instance, item.name, sorted(item.labels.items()))


async def latest_values(
    st: AppState, selector: selectors.Selector
) -> tuple[LatestSource, list[LatestValue]]:
    """All matching values and where they came from (``valkey`` or ``postgres``)."""
    try:
        items = await read_latest(
            st.valkey, st.settings.subjects.root, selector.equal("host"), selector.equal("plugin")
        )
    except (ValkeyError, OSError):
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
