"""``/health`` (the process and its connections) and ``/ready`` (dependencies and consumer lag)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from starlette.requests import Request
from starlette.responses import Response

from unity.api.operation import Operation
from unity.api.responses import MsgspecResponse
from unity.api.state import AppState, state_of
from unity.schemas.api import Check, ConsumerLag, HealthResponse, ReadyResponse
from unity.schemas.storage import DURABLE

CHECK_TIMEOUT_S = 2.0


async def _timed(check: Awaitable[Any]) -> Check:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure of a dependency is reported, not raised
        return Check("error", f"{type(exc).__name__}: {exc}")
    return Check("ok", latency_ms=round((time.perf_counter() - started) * 1000, 3))


async def _checks(st: AppState) -> dict[str, Check]:
    postgres, valkey, nats = await asyncio.gather(
        _timed(st.pool.fetchval("SELECT 1")),
        _timed(st.valkey.ping()),
        _timed(st.nats.flush(timeout=int(CHECK_TIMEOUT_S))),
    )
    return {"postgres": postgres, "valkey": valkey, "nats": nats}


async def health(request: Request) -> Response:
    checks = await _checks(state_of(request))
    healthy = all(c.status == "ok" for c in checks.values())
    return MsgspecResponse(HealthResponse("ok" if healthy else "degraded", checks))


async def ready(request: Request) -> Response:
    st = state_of(request)
    checks = await _checks(st)
    consumers: list[ConsumerLag] = []
    subjects = st.settings.subjects
    for stream in (subjects.metrics_stream, subjects.events_stream):
        try:
            info = await asyncio.wait_for(st.js.consumer_info(stream, DURABLE), CHECK_TIMEOUT_S)
        except (NatsError, JetStreamError, TimeoutError) as exc:
            checks[f"consumer:{stream}"] = Check("error", f"{type(exc).__name__}: {exc}")
            continue
        checks[f"consumer:{stream}"] = Check("ok")
        consumers.append(
            ConsumerLag(
                stream, info.num_pending or 0, info.num_ack_pending or 0, info.num_redelivered or 0
            )
        )
    ok = all(c.status == "ok" for c in checks.values())
    body = ReadyResponse("ready" if ok else "not_ready", checks, consumers)
    return MsgspecResponse(body, status_code=200 if ok else 503)


OPERATIONS = [
    Operation(
        "GET",
        "/health",
        health,
        "Liveness and connection checks",
        "health",
        None,
        response=HealthResponse,
    ),
    Operation(
        "GET",
        "/ready",
        ready,
        "Readiness: dependencies and ingest consumer lag (503 if not)",
        "health",
        None,
        response=ReadyResponse,
    ),
]
