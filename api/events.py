"""``GET /events``: stored events by host, plugin, kind, severity and time, newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from unity.api.errors import ApiError
from unity.api.latest import PAGE
from unity.api.operation import Operation, Param
from unity.api.params import TIME_FORMATS, TIME_SCHEMA, parse_page, parse_time
from unity.api.responses import MsgspecResponse
from unity.api.rows import from_row
from unity.api.state import state_of
from unity.schemas.api import EventItem, EventList

FILTERS = ("host", "plugin", "instance", "kind", "severity")


async def events(request: Request) -> Response:
    st = state_of(request)
    q = request.query_params
    page = parse_page(q)
    end = parse_time("end", q.get("end"), datetime.now(UTC))
    start = parse_time("start", q.get("start"), end - timedelta(days=1))
    if start >= end:
        raise ApiError(400, "bad_range", "start must be before end")
    clauses = ["time >= $1", "time < $2"]
    params: list[object] = [start, end]
    for key in FILTERS:
        value = q.get(key)
        if value is not None and value != "":
            if "\x00" in value:
                raise ApiError(400, "bad_parameter", f"{key} contains a NUL character")
            params.append(value)
            clauses.append(f"{key} = ${len(params)}")
    n = len(params)
    rows = await st.pool.fetch(
        f"SELECT time, host, plugin, instance, kind, severity, message, data::text AS data"  # noqa: S608 -- values are bind parameters
        f" FROM events WHERE {' AND '.join(clauses)}"
        f" ORDER BY time DESC, host, plugin, instance, kind LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        page.limit + 1,
        page.offset,
    )
    items = [from_row(EventItem, r, ("data",)) for r in rows[: page.limit]]
    return MsgspecResponse(EventList(items, page.next_offset(len(rows))))


OPERATIONS = [
    Operation(
        "GET",
        "/events",
        events,
        "Stored events, newest first",
        "data",
        "read",
        params=(
            *(Param(k, "query", {"type": "string"}) for k in FILTERS),
            Param("start", "query", TIME_SCHEMA, f"{TIME_FORMATS}; default: end - 1 day"),
            Param("end", "query", TIME_SCHEMA, f"{TIME_FORMATS}; default: now"),
            *PAGE,
        ),
        response=EventList,
    ),
]
