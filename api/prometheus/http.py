"""Prometheus's HTTP API answers: parameters from the query string or a form body, the
``{"status": "success", "data": ...}`` envelope and ``{"status": "error", ...}`` errors."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import msgspec
import promql_parser as pp
from starlette.requests import Request
from starlette.responses import Response

from unity.api.errors import ApiError
from unity.api.operation import DEPENDENCY_ERRORS, RETRY_AFTER_S
from unity.api.prometheus.values import PromQLError
from unity.api.state import state_of

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
_ERROR_TYPES = {400: "bad_data", 401: "unauthorized", 403: "forbidden", 422: "execution"}
# Prometheus's own bounds for an absent start or end (model.Earliest / model.Latest).
MIN_MS = -9_223_372_036_854_775
MAX_MS = 9_223_372_036_854_775

Params = list[tuple[str, str]]
Handler = Callable[[Request, Params], Awaitable[Any]]


class Answer(Response):
    media_type = "application/json"


def success(data: Any) -> Response:
    return Answer(_encoder.encode({"status": "success", "data": data}))


def failure(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = {"status": "error", "errorType": kind, "error": message}
    return Answer(_encoder.encode(body), status_code=status, headers=headers)


def one(params: Params, name: str) -> str | None:
    return next((v for k, v in params if k == name), None)


def every(params: Params, name: str) -> list[str]:
    return [v for k, v in params if k == name]


def parse_ms(name: str, raw: str | None, default: int) -> int:
    """Epoch seconds (with a fraction) or RFC 3339, as milliseconds."""
    if raw is None or raw == "":
        return default
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise PromQLError(
                f'invalid parameter "{name}": cannot parse "{raw}" to a valid timestamp'
            ) from None
    if not math.isfinite(seconds) or not MIN_MS <= seconds * 1000 <= MAX_MS:
        raise PromQLError(f'invalid parameter "{name}": cannot parse "{raw}" to a valid timestamp')
    return round(seconds * 1000)


def parse_step_ms(raw: str | None) -> int:
    if raw is None or raw == "":
        raise PromQLError('invalid parameter "step": cannot parse "" to a valid duration')
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = pp.parse_duration(raw).total_seconds()
        except ValueError:
            raise PromQLError(
                f'invalid parameter "step": cannot parse "{raw}" to a valid duration'
            ) from None
    if not math.isfinite(seconds) or seconds * 1000 >= MAX_MS:
        raise PromQLError(f'invalid parameter "step": cannot parse "{raw}" to a valid duration')
    step = round(seconds * 1000)
    if step <= 0:
        raise PromQLError(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    return step


async def params_of(request: Request) -> Params:
    """URL parameters, then those of a form body (Grafana POSTs its queries as forms)."""
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/x-www-form-urlencoded":
            body = await request.body()
            try:
                params += parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise PromQLError("the form body is not UTF-8") from None
        elif kind:
            raise PromQLError(f"unsupported content type {kind!r}; send a URL-encoded form")
    return params


def endpoint(template: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Auth (read scope), errors in Prometheus's shape, and the API's request metrics."""

    async def run(request: Request) -> Response:
        st = state_of(request)
        started = time.perf_counter()
        response = failure(500, "internal", "the server failed to handle the request")
        try:
            await st.auth.check(request, "read")
            response = success(await handler(request, await params_of(request)))
        except ApiError as exc:
            kind = _ERROR_TYPES.get(exc.status, "bad_data")
            response = failure(exc.status, kind, exc.message, exc.headers)
        except PromQLError as exc:
            response = failure(400 if exc.kind == "bad_data" else 422, exc.kind, str(exc))
        except asyncpg.DataError as exc:
            response = failure(400, "bad_data", str(exc).splitlines()[0])
        except DEPENDENCY_ERRORS as exc:
            response = failure(
                503,
                "unavailable",
                f"a dependency is unavailable ({type(exc).__name__}); retry later",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("%s %s failed (incident %s)", request.method, template, incident)
            response = failure(500, "internal", f"the server failed (incident {incident})")
        finally:
            st.metrics.observe(
                request.method, template, response.status_code, time.perf_counter() - started
            )
        return response

    return run
