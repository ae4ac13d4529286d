"""Failures the handlers do not expect still answer with the JSON error shape: an unreachable
dependency is a 503 the caller may retry, a bug is a 500 whose traceback is logged once."""

from __future__ import annotations

import dataclasses
import logging
import re
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import msgspec
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from tests.api.conftest import Api
from unity.api.operation import Operation, to_route
from unity.compose.embedded import free_port
from unity.schemas.api import PluginInfo


def _closed_port(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] if ":" in parts.netloc else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{netloc}:{free_port()}"))


async def test_postgres_unreachable_is_a_json_503(api: Api) -> None:
    ep = api.env.ep
    # min_size=0: the pool only connects when a request needs it, like a server gone away.
    down = await asyncpg.create_pool(
        _closed_port(ep.database_url), password=ep.database_password, min_size=0, max_size=1
    )
    healthy = api.state
    api.app.state.unity = dataclasses.replace(healthy, pool=down)
    try:
        resp = await api.get("/plugins")
        events = await api.get("/events")
    finally:
        api.app.state.unity = healthy
        await down.close()
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"] == "application/json"
    error = resp.json()["error"]
    assert error["code"] == "dependency_unavailable"
    assert error["message"].startswith("PostgreSQL is unavailable")
    assert resp.headers["retry-after"].isdigit()
    assert events.status_code == 503 and events.json()["error"]["code"] == "dependency_unavailable"
    # Back on the healthy pool, the same request succeeds: the 503 was the outage.
    assert (await api.get("/plugins")).status_code == 200


async def _stored_row_that_no_longer_decodes(request: Request) -> Response:
    # A handler bug: a stored document read into a Struct whose required fields it lacks.
    msgspec.json.decode(b'{"id": 1}', type=PluginInfo)
    return Response()


async def test_a_handler_bug_is_a_json_500_logged_once(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Operation("GET", "/broken", _stored_row_that_no_longer_decodes, "bug", "test", None)
    mount = api.app.routes[0]
    assert isinstance(mount, Mount)
    mount.routes.insert(0, to_route(broken))
    with caplog.at_level(logging.ERROR, logger="unity.api.operation"):
        resp = await api.get("/broken", scope=None)
    assert resp.status_code == 500
    error = resp.json()["error"]
    assert error["code"] == "internal"
    assert "ValidationError" not in error["message"] and "PluginInfo" not in error["message"]
    incident = re.search(r"incident (\w+)", error["message"])
    assert incident is not None
    logged = [r for r in caplog.records if r.name == "unity.api.operation"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert incident[1] in logged[0].getMessage()
    assert api.state.metrics.requests[("GET", "/broken", 500)] == 1  # its metric saw the 500


async def _outside_any_operation(request: Request) -> Response:
    raise KeyError("not an operation: the app-level handler answers")


async def test_an_error_outside_the_operations_is_json_too(api: Api) -> None:
    api.app.router.routes.insert(0, Route("/outside", _outside_any_operation))
    # The app re-raises after answering so that the server logs it; read the answer anyway.
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://unity") as client:
        resp = await client.get("/outside")
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal"
    assert "KeyError" not in resp.text
