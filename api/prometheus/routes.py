"""``/prometheus/api/v1/*``: what Grafana's Prometheus data source and PromQL tools call."""

from __future__ import annotations

import math
import time
from typing import Any

import asyncpg
import msgspec
import numpy as np
import promql_parser as pp
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from unity.api.prometheus import storage
from unity.api.prometheus.engine import Engine, parse, selector_matchers
from unity.api.prometheus.http import MAX_MS, MIN_MS, Params, endpoint, every, one, parse_ms
from unity.api.prometheus.http import parse_step_ms as step_of
from unity.api.prometheus.labels import Labels, Matcher, labels_of_row
from unity.api.prometheus.values import PromQLError, Scalar, Series, String, Value, Vector
from unity.api.state import state_of

_encoder = msgspec.json.Encoder()
# What /status/buildinfo reports: the Prometheus API version these answers follow.
COMPATIBLE = "2.42.0"
_METHODS = ["GET", "POST"]


def number(v: float) -> str:
    """A sample value as Prometheus writes it (Go's FormatFloat 'f', -1)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(v)
    if "e" in text:
        text = np.format_float_positional(v, trim="-")
    return text[:-2] if text.endswith(".0") else text


def numbers(values: np.ndarray[Any, Any]) -> list[str]:
    """``number`` of each value, formatted by msgspec in one call when it can be."""
    if np.isfinite(values).all():
        text = _encoder.encode(values.tolist())
        if b"e" not in text:
            # Go writes whole numbers without ".0".
            return (text[1:-1] + b",").replace(b".0,", b",").decode().split(",")[:-1]
    return [number(v) for v in values.tolist()]


def _metric(labels: Labels) -> dict[str, str]:
    return dict(labels)


def _now_ms() -> int:
    return round(time.time() * 1000)


def _query(params: Params) -> Any:
    text = one(params, "query")
    if not text:
        raise PromQLError('invalid parameter "query": query is empty')
    return parse(text)


def _points(s: Series, times: np.ndarray[Any, Any]) -> list[tuple[float, str]]:
    idx = np.flatnonzero(s.present)
    return list(zip((times[idx] / 1000.0).tolist(), numbers(s.values[idx]), strict=True))


async def query(request: Request, params: Params) -> Any:
    expr = _query(params)
    at = parse_ms("time", one(params, "time"), _now_ms())
    async with state_of(request).pool.acquire() as conn:
        engine = Engine(conn, at, at, 0)
        if isinstance(expr, pp.MatrixSelector):
            raws = await engine.matrix(expr)
            result: list[Any] = [
                {
                    "metric": _metric(r.labels),
                    "values": list(
                        zip((r.times / 1000.0).tolist(), numbers(r.values), strict=True)
                    ),
                }
                for r in raws
                if len(r.times)
            ]
            return {"resultType": "matrix", "result": result}
        value = await engine.evaluate(expr)
    return _instant_answer(value, at)


def _instant_answer(value: Value, at: int) -> Any:
    t = at / 1000.0
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": [t, number(float(value.values[0]))]}
    if isinstance(value, String):
        return {"resultType": "string", "result": [t, value.value]}
    return {
        "resultType": "vector",
        "result": [
            {"metric": _metric(s.labels), "value": [t, number(float(s.values[0]))]}
            for s in value.series
            if s.present[0]
        ],
    }


async def query_range(request: Request, params: Params) -> Any:
    start = parse_ms("start", one(params, "start"), MIN_MS - 1)
    end = parse_ms("end", one(params, "end"), MIN_MS - 1)
    if start < MIN_MS or end < MIN_MS:
        raise PromQLError('invalid parameter "start" or "end": both are required')
    if end < start:
        raise PromQLError("end timestamp must not be before start time")
    step = step_of(one(params, "step"))
    expr = _query(params)
    if isinstance(expr, pp.MatrixSelector | pp.StringLiteral):
        kind = "range vector" if isinstance(expr, pp.MatrixSelector) else "string"
        raise PromQLError(
            f'invalid expression type "{kind}" for range query, must be Scalar or instant Vector'
        )
    async with state_of(request).pool.acquire() as conn:
        engine = Engine(conn, start, end, step)
        value = await engine.evaluate(expr)
    if isinstance(value, Scalar):
        value = Vector([Series((), value.values, np.ones(engine.steps, dtype=bool))])
    assert isinstance(value, Vector)
    ordered = sorted((s for s in value.series if s.present.any()), key=lambda s: s.labels)
    result = [{"metric": _metric(s.labels), "values": _points(s, engine.times)} for s in ordered]
    return {"resultType": "matrix", "result": result}


def _selectors(params: Params, required: bool) -> list[list[Matcher]]:
    texts = every(params, "match[]")
    if required and not texts:
        raise PromQLError("no match[] parameter provided")
    out: list[list[Matcher]] = []
    for text in texts:
        expr = parse(text)
        if not isinstance(expr, pp.VectorSelector):
            raise PromQLError(f'invalid parameter "match[]": {text!r} is not a series selector')
        out.append(selector_matchers(expr))
    return out


async def _label_sets(request: Request, params: Params, required: bool) -> list[Labels]:
    start = parse_ms("start", one(params, "start"), MIN_MS)
    end = parse_ms("end", one(params, "end"), MAX_MS)
    selectors = _selectors(params, required) or [[]]
    bounds = (
        None if start <= MIN_MS else start,
        None if end >= MAX_MS else end,
    )
    found: dict[Labels, None] = {}
    async with state_of(request).pool.acquire() as conn:
        for matchers in selectors:
            rows = await storage.series(conn, matchers, *bounds, storage.MAX_LISTED)
            found.update((labels_of_row(r), None) for r in rows)
    return sorted(found)


async def series(request: Request, params: Params) -> Any:
    return [_metric(labels) for labels in await _label_sets(request, params, True)]


async def labels(request: Request, params: Params) -> Any:
    names = {k for labels in await _label_sets(request, params, False) for k, _ in labels}
    return sorted(names)


async def label_values(request: Request, params: Params) -> Any:
    name = request.path_params["name"]
    values = {
        v for labels in await _label_sets(request, params, False) for k, v in labels if k == name
    }
    return sorted(values)


async def metadata(request: Request, params: Params) -> Any:
    metric = one(params, "metric")
    limit = int(one(params, "limit") or 0) if (one(params, "limit") or "0").isdigit() else 0
    sql = "SELECT DISTINCT name, kind, unit FROM series"
    args: list[object] = []
    if metric:
        sql += " WHERE name = $1"
        args.append(metric)
    pool: asyncpg.Pool = state_of(request).pool
    out: dict[str, list[dict[str, str]]] = {}
    for row in await pool.fetch(sql + " ORDER BY 1, 2, 3", *args):
        entries = out.setdefault(row["name"], [])
        entries.append({"type": row["kind"], "help": "", "unit": row["unit"]})
    if limit > 0:
        out = dict(list(out.items())[:limit])
    return out


async def exemplars(request: Request, params: Params) -> Any:
    # Unity stores no exemplars; Grafana asks for them beside range queries.
    return []


async def buildinfo(request: Request, params: Params) -> Any:
    return {
        "version": COMPATIBLE,
        "revision": "unity",
        "branch": "",
        "buildUser": "unity",
        "buildDate": "",
        "goVersion": "",
    }


def routes() -> list[BaseRoute]:
    handlers = {
        "/query": query,
        "/query_range": query_range,
        "/series": series,
        "/labels": labels,
        "/label/{name}/values": label_values,
        "/metadata": metadata,
        "/query_exemplars": exemplars,
        "/status/buildinfo": buildinfo,
    }
    return [
        Route(f"/api/v1{path}", endpoint(f"/prometheus/api/v1{path}", h), methods=_METHODS)
        for path, h in handlers.items()
    ]
