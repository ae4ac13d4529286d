"""``GET /query``: history by selector through the storage query layer (raw or a rollup tier)."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from unity.api import query as storage
from unity.api.errors import ApiError
from unity.api.latest import LEGACY, SELECTOR, request_selector
from unity.api.operation import Operation, Param
from unity.api.params import (
    DURATION_SCHEMA,
    TIME_FORMATS,
    TIME_SCHEMA,
    parse_bool,
    parse_duration,
    parse_time,
)
from unity.api.responses import MsgspecResponse
from unity.api.rows import from_row
from unity.api.selectors import Selector
from unity.api.state import state_of
from unity.schemas.api import QueryResponse, SeriesPoints
from unity.schemas.storage import Retention

MAX_SERIES = 10_000
MAX_STEP_S = 366 * 86400.0
RESOLUTIONS: tuple[Literal["auto"] | storage.Resolution, ...] = ("auto", *storage.RESOLUTIONS)


async def _series(conn: asyncpg.Connection, selector: Selector) -> dict[int, asyncpg.Record]:
    where, params = selector.sql(1)
    rows = await conn.fetch(
        f"SELECT s.id, s.host, s.plugin, s.instance, s.name, s.labels::text AS labels, s.unit,"  # noqa: S608 -- values are bind parameters
        f" s.kind FROM series s WHERE {where} ORDER BY s.id LIMIT {MAX_SERIES + 1}",
        *params,
    )
    if len(rows) > MAX_SERIES:
        raise ApiError(422, "too_many_series", f"more than {MAX_SERIES} series match the selector")
    return {r["id"]: r for r in rows}


async def _check_name(conn: asyncpg.Connection, selector: Selector) -> None:
    """A selector naming a metric no series has is a mistake, not an empty history: say so."""
    name = selector.equal("name")
    if name is None:
        return
    names = [r["name"] for r in await conn.fetch("SELECT DISTINCT name FROM series")]
    if name in names:
        return
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ApiError(
        404,
        "unknown_metric",
        f"no series is named {name!r}{hint} (GET /api/v1/series lists them)",
    )


async def query(request: Request) -> Response:
    st = state_of(request)
    q = request.query_params
    now = datetime.now(UTC)
    end = parse_time("end", q.get("end"), now)
    start = parse_time("start", q.get("start"), end - timedelta(hours=1))
    if start >= end:
        raise ApiError(400, "bad_range", "start must be before end")
    step = parse_duration("step", q.get("step"), 0.0) or None
    if step is not None and step > MAX_STEP_S:
        raise ApiError(400, "bad_parameter", f"step must be at most {MAX_STEP_S:.0f} seconds")
    agg = q.get("agg") or "avg"
    if agg not in storage.AGGREGATIONS:
        raise ApiError(
            400, "bad_parameter", f"agg={agg!r}; use one of {', '.join(storage.AGGREGATIONS)}"
        )
    resolution = q.get("resolution") or "auto"
    if resolution not in RESOLUTIONS:
        raise ApiError(400, "bad_parameter", f"resolution={resolution!r}; use {RESOLUTIONS}")
    rate = parse_bool("rate", q.get("rate"), False)
    selector = request_selector(request)
    if not selector.matchers:
        raise ApiError(400, "bad_selector", "give a selector (or name, host, plugin)")
    # One connection for the lookups and the query: each return to the pool costs a round trip.
    async with st.pool.acquire() as conn:
        series = await _series(conn, selector)
        try:
            result = await storage.query(
                conn,
                list(series),
                start,
                end,
                step,
                agg,
                rate,
                st.settings.api_max_points,
                resolution,
                Retention.from_settings(st.settings),
            )
        except storage.TooManyPoints as exc:
            raise ApiError(422, "too_many_points", f"{exc}; narrow the selector or range") from None
        except storage.QueryError as exc:
            raise ApiError(400, "bad_query", str(exc)) from None
        if not series:
            await _check_name(conn, selector)
    out = [_with_points(series[s.id], s.points) for s in result.series if s.points]
    return MsgspecResponse(
        QueryResponse(result.start, result.end, out, result.step, agg, rate, result.resolution)
    )


def _with_points(row: asyncpg.Record, points: list[tuple[float, float]]) -> SeriesPoints:
    # The row is validated; the points are floats from the query layer and are not converted
    # again one by one.
    return msgspec.structs.replace(from_row(SeriesPoints, row, points=[]), points=points)


OPERATIONS = [
    Operation(
        "GET",
        "/query",
        query,
        "History of the series matching a selector, raw or aggregated per step",
        "data",
        "read",
        params=(
            SELECTOR,
            *LEGACY,
            Param("start", "query", TIME_SCHEMA, f"{TIME_FORMATS}; default: end - 1 hour"),
            Param("end", "query", TIME_SCHEMA, f"{TIME_FORMATS}; default: now"),
            Param("step", "query", DURATION_SCHEMA, "bucket width: 60, 60s, 1m, 1h; auto if 0"),
            Param("agg", "query", {"type": "string", "enum": list(storage.AGGREGATIONS)}),
            Param("resolution", "query", {"type": "string", "enum": list(RESOLUTIONS)}),
            Param("rate", "query", {"type": "boolean"}, "counters as per-second rate"),
        ),
        response=QueryResponse,
    ),
]
