"""An endpoint described once: route, scope check, metrics and OpenAPI all derive from it."""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import asyncpg
import msgspec
import nats.errors
import nats.js.errors
import valkey.exceptions
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unity.api.errors import ApiError, api_error_response, error_response, internal_error_response
from unity.api.state import state_of
from unity.schemas.api import Scope

Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")

_CONVERTER = re.compile(r"\{(\w+)(?::\w+)?\}")
log = logging.getLogger(__name__)

# A dependency that cannot be reached is an outage the caller may retry, not a bug. OSError
# covers refused connections and every TimeoutError (asyncio's and nats.py's derive from it).
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    valkey.exceptions.ConnectionError,
    valkey.exceptions.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)
_DEPENDENCY_NAMES = {"asyncpg": "PostgreSQL", "valkey": "Valkey", "nats": "NATS"}
RETRY_AFTER_S = 5


def _dependency(exc: BaseException) -> str:
    """Which client failed: its exception's package, or for an OSError the innermost client
    frame the error passed through."""
    which = _DEPENDENCY_NAMES.get(type(exc).__module__.split(".")[0])
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        package = str(frame.f_globals.get("__name__", "")).split(".")[0]
        which = _DEPENDENCY_NAMES.get(package, which)
    return which or "a dependency"


def _unavailable(exc: BaseException) -> Response:
    which = _dependency(exc)
    # The type, not the text: a connection error's text names hosts and ports.
    return error_response(
        503,
        "dependency_unavailable",
        f"{which} is unavailable ({type(exc).__name__}); retry later",
        {"Retry-After": str(RETRY_AFTER_S)},
    )


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
    # Other success statuses with the same body, and what each means.
    also: tuple[tuple[int, str], ...] = ()

    @property
    def template(self) -> str:
        """The path without Starlette converters, as OpenAPI and metrics name it."""
        return _CONVERTER.sub(r"{\1}", self.path)


def to_route(op: Operation) -> Route:
    return Route(op.path, _endpoint(op), methods=[op.method], name=f"{op.method} {op.template}")


def to_routes(ops: Iterable[Operation]) -> list[Route]:
    """One route per path with every method it has: a 405 then names them all in ``Allow``
    (a route per operation answered OPTIONS /plugins with ``GET, HEAD`` though POST exists)."""
    by_path: dict[str, dict[str, Handler]] = {}
    for op in ops:
        by_path.setdefault(op.path, {})[op.method] = _endpoint(op)
    routes = []
    for path, endpoints in by_path.items():

        async def endpoint(request: Request, endpoints: dict[str, Handler] = endpoints) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await endpoints[method](request)

        routes.append(Route(path, endpoint, methods=list(endpoints), name=path))
    return routes


def _endpoint(op: Operation) -> Handler:
    template = op.template

    async def endpoint(request: Request) -> Response:
        st = state_of(request)
        started = time.perf_counter()
        status = 500
        try:
            try:
                if op.scope is not None:
                    await st.auth.check(request, op.scope)
                _ids_in_range(request)
                response = await op.handler(request)
            except ApiError as exc:
                response = api_error_response(exc)
            except asyncpg.DataError as exc:
                # A value PostgreSQL refuses (a regex it cannot compile, say) is the caller's error.
                response = error_response(400, "bad_value", str(exc).splitlines()[0])
            except DEPENDENCY_ERRORS as exc:
                response = _unavailable(exc)
            except Exception:
                incident = uuid.uuid4().hex[:12]
                log.exception("%s %s failed (incident %s)", op.method, template, incident)
                response = internal_error_response(incident)
            status = response.status_code
            return response
        finally:
            st.metrics.observe(op.method, template, status, time.perf_counter() - started)

    return endpoint


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


# Path ids are PostgreSQL bigints; the document says so (openapi.py) and a larger one names
# nothing, rather than being a value PostgreSQL refuses (400).
INT64_MAX = 2**63 - 1


def _ids_in_range(request: Request) -> None:
    for name, value in request.path_params.items():
        if isinstance(value, int) and value > INT64_MAX:
            raise ApiError(404, "not_found", f"{name} {value} is beyond any stored id")


def path_int(request: Request, name: str) -> int:
    value: int = request.path_params[name]
    return value
