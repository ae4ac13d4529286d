"""An endpoint described once: route, scope check, metrics and OpenAPI all derive from it."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.errors import ApiError, api_error_response, error_response
from api.state import state_of
from schemas.api import Scope

Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")

_CONVERTER = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: Literal["query", "path", "header"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    scope: Scope | None
    params: tuple[Param, ...] = ()
    body: type | None = None
    response: type | None = None
    status: int = 200
    media_type: str = "application/json"

    @property
    def template(self) -> str:
        """The path without Starlette converters, as OpenAPI and metrics name it."""
        return _CONVERTER.sub(r"{\1}", self.path)


def to_route(op: Operation) -> Route:
    template = op.template

    async def endpoint(request: Request) -> Response:
        st = state_of(request)
        started = time.perf_counter()
        status = 500
        try:
            try:
                if op.scope is not None:
                    await st.auth.check(request, op.scope)
                response = await op.handler(request)
            except ApiError as exc:
                response = api_error_response(exc)
            except asyncpg.DataError as exc:
                # A value PostgreSQL refuses (a regex it cannot compile, say) is the caller's error.
                response = error_response(400, "bad_value", str(exc).splitlines()[0])
            status = response.status_code
            return response
        finally:
            st.metrics.observe(op.method, template, status, time.perf_counter() - started)

    return Route(op.path, endpoint, methods=[op.method], name=f"{op.method} {template}")


_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


async def read_body(request: Request, type_: type[T]) -> T:
    """Decode the JSON body as ``type_``: 400 when malformed, 422 when it breaks the schema."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    raw = await request.body()
    try:
        value: T = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "invalid_body", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_body", f"the body is not JSON: {exc}") from None
    return value


def path_int(request: Request, name: str) -> int:
    value: int = request.path_params[name]
    return value
