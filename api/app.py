"""The Starlette application: lifespan owns the connections, routes live in api.routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route

from api import routes
from api.errors import ApiError, on_api_error, on_http_error
from api.state import AppState
from compose.connect import connect_nats, pg_pool, valkey_client
from compose.settings import Endpoints, Settings


def create_app(settings: Settings, ep: Endpoints) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await pg_pool(ep, min_size=1, max_size=8)
        client = valkey_client(ep)
        nc = await connect_nats(ep, "unity-api")
        app.state.unity = AppState(settings, pool, client, nc)
        try:
            yield
        finally:
            await nc.drain()
            await client.aclose()
            await pool.close()

    api = [
        Route("/health", routes.health),
        Route("/latest", routes.latest),
        Route("/query", routes.query),
    ]
    return Starlette(
        routes=[Mount("/api/v1", routes=api)],
        lifespan=lifespan,
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error},
    )
