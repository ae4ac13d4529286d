"""``GET /metrics``: Prometheus text of the API's own metrics, and latest values on request."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from unity.api.latest import latest_values, request_selector
from unity.api.metrics import render_latest
from unity.api.operation import Operation, Param
from unity.api.params import parse_bool
from unity.api.state import state_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def metrics(request: Request) -> Response:
    st = state_of(request)
    lines = st.metrics.render()
    if parse_bool("latest", request.query_params.get("latest"), False):
        _, values = await latest_values(st, request_selector(request))
        lines += render_latest(values)
    return Response("\n".join(lines) + "\n", media_type=CONTENT_TYPE)


OPERATIONS = [
    Operation(
        "GET",
        "/metrics",
        metrics,
        "Prometheus exposition: API metrics; with latest=true also the latest values",
        "metrics",
        "read",
        params=(
            Param("latest", "query", {"type": "boolean"}, "include latest values as gauges"),
            Param("selector", "query", {"type": "string"}, "which latest values"),
        ),
        media_type="text/plain",
    ),
]
