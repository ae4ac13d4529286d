"""``GET /series`` (search by selector) and ``GET /hosts`` (what each host runs and reports)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from unity.api import selectors
from unity.api.latest import PAGE, SELECTOR
from unity.api.operation import Operation
from unity.api.params import parse_page
from unity.api.responses import MsgspecResponse
from unity.api.rows import from_row
from unity.api.state import state_of
from unity.schemas.api import HostInfo, HostList, SeriesInfo, SeriesList


async def series(request: Request) -> Response:
    st = state_of(request)
    page = parse_page(request.query_params)
    where, params = selectors.parse(request.query_params.get("selector")).sql(1)
    n = len(params)
    rows = await st.pool.fetch(
        f"SELECT s.id, s.host, s.plugin, s.instance, s.name, s.labels::text AS labels, s.unit,"  # noqa: S608 -- values are bind parameters
        f" s.kind, s.first_seen, s.last_seen FROM series s WHERE {where}"
        f" ORDER BY s.host, s.plugin, s.instance, s.name, s.id LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        page.limit + 1,
        page.offset,
    )
    items = [from_row(SeriesInfo, r) for r in rows[: page.limit]]
    return MsgspecResponse(SeriesList(items, page.next_offset(len(rows))))


# Worst health wins: error > degraded > ok.
_HOSTS = """
WITH s AS (
    SELECT host, count(*) AS n, max(last_seen) AS seen, array_agg(DISTINCT plugin) AS plugins
    FROM series GROUP BY host
), p AS (
    SELECT host, max(last_seen) AS seen, array_agg(DISTINCT plugin) AS plugins,
           max(CASE health WHEN 'error' THEN 3 WHEN 'degraded' THEN 2 WHEN 'ok' THEN 1 END) AS worst
    FROM plugins GROUP BY host
)
SELECT coalesce(s.host, p.host) AS host,
       GREATEST(s.seen, p.seen) AS last_seen,
       ARRAY(SELECT DISTINCT x FROM unnest(coalesce(s.plugins, '{}') || coalesce(p.plugins, '{}'))
             AS x ORDER BY x) AS plugins,
       coalesce(s.n, 0) AS series,
       CASE p.worst WHEN 3 THEN 'error' WHEN 2 THEN 'degraded' WHEN 1 THEN 'ok' END AS health
FROM s FULL JOIN p ON p.host = s.host
ORDER BY 1
LIMIT $1 OFFSET $2
"""


async def hosts(request: Request) -> Response:
    st = state_of(request)
    page = parse_page(request.query_params)
    rows = await st.pool.fetch(_HOSTS, page.limit + 1, page.offset)
    items = [
        HostInfo(r["host"], r["last_seen"], list(r["plugins"]), r["series"], r["health"])
        for r in rows[: page.limit]
    ]
    return MsgspecResponse(HostList(items, page.next_offset(len(rows))))


OPERATIONS = [
    Operation(
        "GET",
        "/series",
        series,
        "Search the series catalogue by selector",
        "data",
        "read",
        params=(SELECTOR, *PAGE),
        response=SeriesList,
    ),
    Operation(
        "GET",
        "/hosts",
        hosts,
        "Hosts: last seen, plugins, series count, worst health",
        "data",
        "read",
        params=PAGE,
        response=HostList,
    ),
]
