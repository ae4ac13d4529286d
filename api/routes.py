"""The /api/v1 endpoints of the walking skeleton: health, latest, query."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from valkey.exceptions import ValkeyError

from api.errors import ApiError
from api.params import parse_int, parse_time
from api.responses import MsgspecResponse
from api.state import state_of
from ingest.cache import read_latest
from schemas.api import (
    Check,
    HealthResponse,
    LatestResponse,
    LatestValue,
    QueryResponse,
    SeriesPoints,
)

MAX_POINTS = 100_000


async def _timed(check: Any) -> Check:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check, 2.0)
    except Exception as exc:  # any failure of a dependency is reported, not raised
        return Check("error", f"{type(exc).__name__}: {exc}")
    return Check("ok", latency_ms=round((time.perf_counter() - started) * 1000, 3))


async def health(request: Request) -> Response:
    st = state_of(request)

    async def nats_ok() -> None:
        await st.nats.flush(timeout=2)

    checks = {
        "postgres": await _timed(st.pool.fetchval("SELECT 1")),
        "valkey": await _timed(st.valkey.ping()),
        "nats": await _timed(nats_ok()),
    }
    healthy = all(c.status == "ok" for c in checks.values())
    return MsgspecResponse(HealthResponse("ok" if healthy else "degraded", checks))


def _filters(request: Request) -> tuple[str | None, str | None, str | None]:
    q = request.query_params
    return q.get("host") or None, q.get("plugin") or None, q.get("name") or None


_SERIES_WHERE = """
    ($1::text IS NULL OR s.host = $1)
    AND ($2::text IS NULL OR s.plugin = $2)
    AND ($3::text IS NULL OR s.name = $3)
"""


async def latest(request: Request) -> Response:
    st = state_of(request)
    host, plugin, name = _filters(request)
    try:
        items = await read_latest(st.valkey, st.settings.subjects.root, host, plugin)
    except (ValkeyError, OSError):
        return MsgspecResponse(LatestResponse("postgres", await _latest_from_pg(st.pool, request)))
    if name is not None:
        items = [i for i in items if i.name == name]
    items.sort(key=lambda i: (i.host, i.plugin, i.instance, i.name, sorted(i.labels.items())))
    return MsgspecResponse(LatestResponse("valkey", items))


async def _latest_from_pg(pool: asyncpg.Pool, request: Request) -> list[LatestValue]:
    rows = await pool.fetch(
        f"""
        SELECT s.host, s.plugin, s.instance, s.name, s.labels::text AS labels, s.unit, s.kind,
               l.time, l.value
        FROM series s
        CROSS JOIN LATERAL (
            SELECT time, value FROM samples WHERE series_id = s.id ORDER BY time DESC LIMIT 1
        ) l
        WHERE {_SERIES_WHERE}
        ORDER BY s.host, s.plugin, s.instance, s.name, s.labels
        """,  # noqa: S608 -- fixed SQL text; every value is a bind parameter
        *_filters(request),
    )
    return [
        LatestValue(
            host=r["host"],
            plugin=r["plugin"],
            instance=r["instance"],
            name=r["name"],
            labels=json.loads(r["labels"]),
            unit=r["unit"],
            kind=r["kind"],
            value=r["value"],
            ts=r["time"],
        )
        for r in rows
    ]


async def query(request: Request) -> Response:
    st = state_of(request)
    now = datetime.now(UTC)
    q = request.query_params
    end = parse_time("end", q.get("end"), now)
    start = parse_time("start", q.get("start"), end - timedelta(hours=1))
    if start >= end:
        raise ApiError(400, "bad_range", "start must be before end")
    limit = parse_int("limit", q.get("limit"), MAX_POINTS, 1, MAX_POINTS)
    rows = await st.pool.fetch(
        f"""
        SELECT s.id, s.host, s.plugin, s.instance, s.name, s.labels::text AS labels, s.unit,
               s.kind, p.time, p.value
        FROM series s
        JOIN samples p ON p.series_id = s.id
        WHERE {_SERIES_WHERE} AND p.time >= $4 AND p.time < $5
        ORDER BY s.id, p.time
        LIMIT $6
        """,  # noqa: S608 -- fixed SQL text; every value is a bind parameter
        *_filters(request),
        start,
        end,
        limit + 1,
    )
    if len(rows) > limit:
        raise ApiError(
            422, "too_many_points", f"more than {limit} points match; narrow the filter or range"
        )
    series: dict[int, SeriesPoints] = {}
    for r in rows:
        item = series.get(r["id"])
        if item is None:
            item = series[r["id"]] = SeriesPoints(
                id=r["id"],
                host=r["host"],
                plugin=r["plugin"],
                instance=r["instance"],
                name=r["name"],
                labels=json.loads(r["labels"]),
                unit=r["unit"],
                kind=r["kind"],
                points=[],
            )
        item.points.append((r["time"].timestamp(), r["value"]))
    return MsgspecResponse(QueryResponse(start, end, list(series.values())))
