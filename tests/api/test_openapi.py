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

from tests.api.conftest import Api
from tests.servers import Env
from unity.api.app import create_app
from unity.api.tokens import create_token
from unity.compose.embedded import free_port
from unity.ingest.streams import ensure_consumers, ensure_streams
from unity.sdk.connection import connect_nats, pg_connect

# A live stream never ends, so a plain HTTP call cannot check it; tests/api/test_stream does.
UNFUZZABLE = {"/api/v1/stream", "/api/v1/alerts/stream"}
EXAMPLES = 30
# Responses must match the document: status, media type, headers and body schema. Not
# negative_data_rejection: unknown query parameters are ignored, as HTTP APIs do, and the
# token this test sends replaces the missing Authorization of a negative case. Nor
# positive_data_acceptance: a valid id may not exist (404), a valid string may be a bad
# selector (400).
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]


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
    assert set(register["responses"]) >= {"200", "201"}  # re-registering answers 200
    for path in ("/api/v1/query", "/api/v1/events", "/api/v1/plugins/{id}/runs"):
        params = {p["name"]: p["schema"] for p in doc["paths"][path]["get"]["parameters"]}
        for name in ("start", "end"):
            assert {"format": "date-time"} in params[name]["anyOf"], (path, name)


async def test_the_document_states_the_limits_the_server_enforces(api: Api) -> None:
    """Every numeric limit in the document holds at its edges, an empty time is the default,
    and a 405 names every method of the path; drift between the two fails here."""
    doc = (await api.client.get("/api/v1/openapi.json")).json()
    checked = []
    for path, ops in doc["paths"].items():
        if not path.startswith("/api/v1") or path in UNFUZZABLE:
            continue
        url = path.removeprefix("/api/v1")
        # OPTIONS is no operation: the answer names every method the path has.
        allowed = await api.send("OPTIONS", re.sub(r"\{\w+\}", "1", url), "admin")
        methods = {m.strip() for m in allowed.headers.get("allow", "").split(",")}
        assert allowed.status_code == 405 and methods >= {m.upper() for m in ops}, (path, methods)
        get = ops.get("get")
        if get is None:
            continue
        params = {p["name"]: p for p in get["parameters"]}
        base = {"selector": "x"} if "selector" in params else {}
        for name, param in params.items():
            schema, where = param["schema"], param["in"]
            for edge in ("minimum", "maximum"):
                if edge not in schema:
                    continue
                value = schema[edge]
                answer = await _call(api, url, params, base, name, value)
                assert answer.status_code not in (400, 422), (path, name, value, answer.text)
                checked.append(f"{path} {name}={value}")
                if edge == "maximum" and schema.get("type") == "integer":
                    beyond = await _call(api, url, params, base, name, value + 1)
                    refused = (404,) if where == "path" else (400, 422)
                    assert beyond.status_code in refused, (path, name, beyond.text)
            if where == "query" and _is_time(schema):
                answer = await _call(api, url, params, base, name, "")
                assert answer.status_code not in (400, 422), (path, name, answer.text)
                checked.append(f"{path} {name}=")
    assert any("offset=10000000" in c for c in checked), checked
    assert any("start=" in c for c in checked), checked
    # Bodies: the registration's interval limits are the registry's.
    schemas = doc["components"]["schemas"]
    interval = schemas["PluginRegistration"]["properties"]["interval_s"]["anyOf"][0]
    assert (interval["minimum"], interval["maximum"]) == (0.05, 86400)
    for value, status in ((0.05, 201), (86400, 200), (86400.5, 422), (0.01, 422)):
        body = {"host": "h", "plugin": "limits", "interval_s": value}
        answer = await api.send("POST", "/plugins", "write", json=body)
        assert answer.status_code == status, (value, answer.text)
    replay = schemas["ReplayRequest"]["properties"]["since"]
    assert replay["format"] == "date-time"


async def _call(
    api: Api, url: str, params: dict[str, Any], base: dict[str, str], name: str, value: object
) -> Any:
    path = {n: "1" for n, p in params.items() if p["in"] == "path"}
    query = dict(base)
    if params[name]["in"] == "path":
        path[name] = str(value)
    else:
        query[name] = str(value)
    for key, shown in path.items():
        url = url.replace(f"{{{key}}}", shown)
    return await api.get(url, "admin", params=query)


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
                case.validate_response(resp, checks=CHECKS)

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                # No parameters or body to break: there is no negative case to send.
                assert mode is schemathesis.GenerationMode.NEGATIVE
                continue
            yield f"{op.method.upper()} {op.path} ({mode.value})"


# Values at and past the edges of what datetime holds: random generation rarely reaches them.
TIME_EDGES = (
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:30:00+01:00",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "9000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-05:00",
    "-1",
    "1e300",
    "-1e300",
    "inf",
    "nan",
    "-1000000w",
    "-99999999999w",
    "now",
)


def _is_time(schema: dict[str, Any]) -> bool:
    return any(alt.get("format") == "date-time" for alt in schema.get("anyOf", ()))


def _time_edges(base: str, token: str, plugin_id: int) -> Iterator[str]:
    """Every time parameter the document describes, at every edge, alone (the other bound
    then derives from it)."""
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    for result in schema.get_all_operations():
        op = result.ok()  # type: ignore[union-attr]
        params = op.definition.raw.get("parameters", [])
        times = [p["name"] for p in params if p["in"] == "query" and _is_time(p["schema"])]
        path = {p["name"]: plugin_id for p in params if p["in"] == "path"}
        query = {"selector": "x"} if any(p["name"] == "selector" for p in params) else {}
        for name in times:
            for edge in TIME_EDGES:
                case = op.Case(path_parameters=path, query=query | {name: edge})
                resp = case.call(base_url=base, headers=headers, timeout=10)
                assert resp.status_code < 500, f"{op.path}?{name}={edge} -> {resp.text[:300]}"
                case.validate_response(resp, checks=CHECKS)
                yield f"{op.path}?{name}={edge}"


@pytest.mark.slow
async def test_property_fuzz_over_the_document_finds_no_server_error(env: Env) -> None:
    nc = await connect_nats(env.ep, "fuzz")
    await ensure_streams(nc.jetstream(), env.settings)
    await ensure_consumers(nc.jetstream(), env.settings)
    await nc.close()
    conn = await pg_connect(env.ep)
    try:
        _, token = await create_token(conn, "fuzz", ["admin"])
        plugin_id = await conn.fetchval(
            "INSERT INTO plugins (host, plugin, config_schema) VALUES ('h', 'p', $1::jsonb)"
            " RETURNING id",
            '{"type": "object"}',
        )
    finally:
        await conn.close()
    with ThreadedServer(env) as base:
        edges = await asyncio.to_thread(lambda: list(_time_edges(base, token, plugin_id)))
        covered = await asyncio.to_thread(lambda: list(_fuzz(base, token)))
    print(f"\nfuzzed {len(covered)} operation/mode pairs, {EXAMPLES} examples each")
    assert len(covered) >= 30
    # start and end of /events, /query, /plugins/{id}/runs and /alerts/history
    assert len(edges) == 8 * len(TIME_EDGES), edges
