"""The OpenAPI document matches the routes, the reference page works offline, and a
property test over the document (schemathesis) finds no 5xx."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase

from api.app import create_app
from api.tokens import create_token
from compose.connect import connect_nats, pg_connect
from compose.embedded import free_port
from ingest.streams import ensure_consumers, ensure_streams
from tests.api.conftest import Api
from tests.conftest import Env

# A live stream never ends, so a plain HTTP call cannot check it; tests/api/test_stream does.
UNFUZZABLE = {"/api/v1/stream"}
EXAMPLES = 30


async def test_document_lists_every_route_with_schemas(api: Api) -> None:
    resp = await api.client.get("/api/v1/openapi.json")
    doc = resp.json()
    assert doc["openapi"] == "3.1.0"
    routes = {
        (method.lower(), re.sub(r"\{(\w+):\w+\}", r"{\1}", "/api/v1" + r.path))
        for r in api.app.routes[0].routes  # type: ignore[attr-defined]
        if getattr(r, "methods", None) and "openapi" not in r.path and "docs" not in r.path
        for method in r.methods - {"HEAD"}
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops if p != "/metrics"}
    assert routes == documented
    register = doc["paths"]["/api/v1/plugins"]["post"]
    assert register["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PluginRegistration"
    }
    assert register["security"] == [{"bearer": []}]
    assert "PluginRegistration" in doc["components"]["schemas"]
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["error"]


async def test_reference_page_needs_no_network(api: Api) -> None:
    page = await api.client.get("/api/v1/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/api/v1/docs/assets/") for s in sources)
    for source in sources:
        asset = await api.client.get(source)
        assert asset.status_code == 200 and len(asset.content) > 10_000


class ThreadedServer:
    """uvicorn on a free port in its own thread and event loop: schemathesis calls are sync."""

    def __init__(self, env: Env) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(env.settings, env.ep),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(600):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.05)
        assert self.server.started, "uvicorn did not start"
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def _fuzz(base: str, token: str) -> Iterator[str]:
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    for result in schema.get_all_operations():
        op = result.ok()  # type: ignore[union-attr]
        if op.path in UNFUZZABLE:
            continue
        for mode in schemathesis.GenerationMode:

            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case[Any]) -> None:
                resp = case.call(base_url=base, headers=headers, timeout=10)
                assert resp.status_code < 500, (
                    f"{case.method} {case.formatted_path} {case.query} {case.body!r} -> "
                    f"{resp.status_code} {resp.text[:300]}"
                )

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                # No parameters or body to break: there is no negative case to send.
                assert mode is schemathesis.GenerationMode.NEGATIVE
                continue
            yield f"{op.method.upper()} {op.path} ({mode.value})"


@pytest.mark.slow
async def test_property_fuzz_over_the_document_finds_no_server_error(env: Env) -> None:
    nc = await connect_nats(env.ep, "fuzz")
    await ensure_streams(nc.jetstream(), env.settings)
    await ensure_consumers(nc.jetstream(), env.settings)
    await nc.close()
    conn = await pg_connect(env.ep)
    try:
        _, token = await create_token(conn, "fuzz", ["admin"])
        await conn.execute(
            "INSERT INTO plugins (host, plugin, config_schema) VALUES ('h', 'p', $1::jsonb)",
            '{"type": "object"}',
        )
    finally:
        await conn.close()
    with ThreadedServer(env) as base:
        covered = await asyncio.to_thread(lambda: list(_fuzz(base, token)))
    print(f"\nfuzzed {len(covered)} operation/mode pairs, {EXAMPLES} examples each")
    assert len(covered) >= 30
