"""``GET /api/v1/``: the API's front door, so the URL `unity up` prints leads somewhere."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from unity.api.operation import Operation
from unity.api.responses import MsgspecResponse
from unity.schemas.api import ApiIndex, IndexLink

_AUTH = (
    "send 'Authorization: Bearer <token>'; reads need a read token unless the server runs with "
    "UNITY_API_OPEN_READS=true, writes always need one; `unity token create NAME` makes one"
)


def operation(prefix: str, operations: Sequence[tuple[str, Operation]], version: str) -> Operation:
    """The index of ``operations`` (each with its mount prefix), itself open to anyone; served
    at ``prefix``/."""
    links = [
        IndexLink(op.method, f"{mount}{op.template}", op.summary, op.scope)
        for mount, op in operations
    ]
    body = ApiIndex(
        name="unity",
        version=version,
        reference=f"{prefix}/docs",
        openapi=f"{prefix}/openapi.json",
        health=f"{prefix}/health",
        auth=_AUTH,
        endpoints=[IndexLink("GET", f"{prefix}/", "This index", None), *links],
    )

    async def index(request: Request) -> Response:
        return MsgspecResponse(body)

    return Operation(
        "GET", "/", index, "What the API offers, with links", "health", None, response=ApiIndex
    )
