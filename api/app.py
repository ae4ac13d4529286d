"""The Starlette application: lifespan owns the connections; each concept module brings its
operations, from which the routes and the OpenAPI document are both built."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from unity.api import (
    alerts,
    alerts_admin,
    catalogue,
    events,
    exposition,
    health,
    history,
    index,
    latest,
    prometheus,
    reference,
    registry,
    remote_write,
    replay,
    stream,
)
from unity.api.auth import Authenticator
from unity.api.errors import ApiError, on_api_error, on_http_error, on_internal_error
from unity.api.hub import Hub
from unity.api.kv import ConfigBucket
from unity.api.limits import BodyLimit
from unity.api.metrics import ApiMetrics
from unity.api.openapi import document
from unity.api.operation import Operation, to_routes
from unity.api.query import POOL_SETTINGS
from unity.api.state import AppState
from unity.api.web import pages, session
from unity.sdk.connection import connect_nats, pg_pool, valkey_client
from unity.sdk.settings import Endpoints, Settings

PREFIX = "/api/v1"

OPERATIONS: list[Operation] = [
    *health.OPERATIONS,
    *registry.OPERATIONS,
    *catalogue.OPERATIONS,
    *latest.OPERATIONS,
    *history.OPERATIONS,
    *events.OPERATIONS,
    *stream.OPERATIONS,
    *replay.OPERATIONS,
    *remote_write.OPERATIONS,
    *alerts.OPERATIONS,
    *alerts_admin.OPERATIONS,
    *session.OPERATIONS,
]
ROOT_OPERATIONS: list[Operation] = [*exposition.OPERATIONS]


def _version() -> str:
    try:
        return version("unity-telemetry")
    except PackageNotFoundError:
        return "0"


def create_app(settings: Settings, ep: Endpoints) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await pg_pool(ep, min_size=1, max_size=8, server_settings=POOL_SETTINGS)
        client = valkey_client(ep)
        nc = await connect_nats(ep, "unity-api")
        js = nc.jetstream()
        metrics = ApiMetrics()
        auth = Authenticator(pool, settings.api_open_reads)
        await auth.start()
        subjects = settings.subjects
        hub = Hub(
            js,
            subjects.metrics_stream,
            f"{subjects.root}.metrics.>",
            settings.api_stream_queue,
            metrics,
        )
        app.state.unity = AppState(
            settings=settings,
            pool=pool,
            valkey=client,
            nats=nc,
            js=js,
            auth=auth,
            metrics=metrics,
            hub=hub,
            config=ConfigBucket(js, subjects.config_bucket),
        )
        try:
            yield
        finally:
            await hub.stop()
            await auth.stop()
            await nc.drain()
            await client.aclose()
            await pool.close()

    mounted = [(PREFIX, op) for op in OPERATIONS] + [("", op) for op in ROOT_OPERATIONS]
    front = index.operation(PREFIX, mounted, _version())
    spec = document([(PREFIX, front), *mounted], _version())

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    api: list[BaseRoute] = [*to_routes((front, *OPERATIONS))]
    api += [
        Route("/openapi.json", openapi),
        Route("/docs", reference.page),
        Mount("/docs/assets", app=reference.assets()),
    ]
    return Starlette(
        routes=[
            Mount(PREFIX, routes=api),
            Mount("/prometheus", routes=prometheus.routes()),
            *to_routes(ROOT_OPERATIONS),
            *pages.routes(),
        ],
        lifespan=lifespan,
        middleware=[Middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)],
        exception_handlers={
            ApiError: on_api_error,
            HTTPException: on_http_error,
            Exception: on_internal_error,
        },
    )
