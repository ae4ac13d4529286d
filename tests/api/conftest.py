"""An API on the test's isolated servers, with one token per scope, and a way to feed it data."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from starlette.applications import Starlette

from tests.helpers import wait_for
from tests.servers import Env
from unity.api.app import create_app
from unity.api.state import AppState
from unity.api.tokens import create_token
from unity.compose.embedded import free_port
from unity.ingest.streams import ensure_consumers, ensure_streams
from unity.schemas import MetricBatch, encode
from unity.sdk.connection import connect_nats


@dataclass
class Api:
    env: Env
    app: Starlette
    client: httpx.AsyncClient
    js: JetStreamContext
    tokens: dict[str, str]

    @property
    def state(self) -> AppState:
        st: AppState = self.app.state.unity
        return st

    def auth(self, scope: str = "read") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    async def get(self, path: str, scope: str | None = "read", **kw: Any) -> httpx.Response:
        return await self.send("GET", path, scope, **kw)

    async def send(
        self, method: str, path: str, scope: str | None = "write", **kw: Any
    ) -> httpx.Response:
        headers = (self.auth(scope) if scope else {}) | kw.pop("headers", {})
        return await self.client.request(method, f"/api/v1{path}", headers=headers, **kw)

    async def publish(self, batch: MetricBatch) -> int:
        subject = self.env.settings.subjects.metrics(batch.host, batch.plugin)
        ack = await self.js.publish(subject, encode(batch))
        seq: int = ack.seq
        return seq


@contextlib.asynccontextmanager
async def running_api(env: Env, **overrides: Any) -> AsyncIterator[Api]:
    settings = msgspec.structs.replace(env.settings, **overrides)
    nc: NATS = await connect_nats(env.ep, "api-tests")
    js = nc.jetstream()
    await ensure_streams(js, settings)
    await ensure_consumers(js, settings)
    app = create_app(settings, env.ep)
    try:
        async with app.router.lifespan_context(app):
            st: AppState = app.state.unity
            tokens = {}
            for scope in ("read", "write", "admin"):
                name = f"test-{scope}-{uuid.uuid4().hex[:8]}"
                _, tokens[scope] = await create_token(st.pool, name, [scope])
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://unity") as client:
                yield Api(env, app, client, js, tokens)
    finally:
        await nc.close()


def without_valkey(env: Env) -> Env:
    """The same servers, except that Valkey is a port where nothing listens."""
    url = f"valkey://127.0.0.1:{free_port()}/0"
    settings = msgspec.structs.replace(env.settings, valkey_url=url)
    return Env(settings, dataclasses.replace(env.ep, valkey_url=url), env.root)


@pytest.fixture
async def api(env: Env) -> AsyncIterator[Api]:
    async with running_api(env) as running:
        yield running


async def stored(api: Api, batches: list[MetricBatch]) -> None:
    """Publish the batches and wait until ingest has them in PostgreSQL."""
    expected = sum(len(b.samples) for b in batches)
    before: int = await api.state.pool.fetchval("SELECT count(*) FROM samples")
    for batch in batches:
        await api.publish(batch)

    async def done() -> bool:
        n: int = await api.state.pool.fetchval("SELECT count(*) FROM samples")
        return n >= before + expected

    await wait_for(done)
