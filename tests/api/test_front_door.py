"""What a new user meets first: the URL `unity up` prints, a misspelt metric, a coarse query."""

from __future__ import annotations

import time

from tests.api.conftest import Api, stored
from tests.helpers import running_ingest
from unity.schemas import MetricBatch, Sample


async def test_the_printed_api_url_says_what_is_there(api: Api) -> None:
    # `unity up` prints .../api/v1; a browser follows the slash redirect, with no token.
    bare = await api.client.get("/api/v1")
    assert bare.status_code in (301, 307, 308), bare.text
    assert bare.headers["location"].endswith("/api/v1/")
    resp = await api.client.get("/api/v1/")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["reference"] == "/api/v1/docs"
    assert body["openapi"] == "/api/v1/openapi.json"
    assert body["health"] == "/api/v1/health"
    assert "Bearer" in body["auth"]
    listed = {(e["method"], e["href"]): e for e in body["endpoints"]}
    assert listed[("GET", "/api/v1/latest")]["scope"] == "read"
    assert listed[("GET", "/api/v1/health")]["scope"] is None
    assert ("GET", "/metrics") in listed
    # The links a newcomer follows first are served (streams would never end: left out).
    for href in ("/api/v1/health", "/api/v1/hosts", "/api/v1/latest", "/api/v1/plugins"):
        assert ("GET", href) in listed
        answer = await api.client.get(href, headers=api.auth("read"))
        assert answer.status_code == 200, (href, answer.text)
    docs = await api.client.get(body["reference"])
    assert docs.status_code == 200


async def test_the_index_is_in_the_openapi_document(api: Api) -> None:
    spec = (await api.client.get("/api/v1/openapi.json")).json()
    assert "get" in spec["paths"]["/api/v1/"]


async def test_an_unknown_metric_name_is_a_404_that_says_so(api: Api) -> None:
    now = time.time()
    batch = MetricBatch(
        host="nas",
        plugin="cpu",
        ts=now - 5,
        seq=1,
        samples=[Sample("cpu_usage_percent", 12.5, {"cpu": "total"}, "percent")],
    )
    async with running_ingest(api.env):
        await stored(api, [batch])

    resp = await api.get("/query", params={"selector": 'cpu_usage_percen{host="nas"}'})
    assert resp.status_code == 404, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unknown_metric"
    assert "'cpu_usage_percen'" in error["message"]
    assert "did you mean cpu_usage_percent" in error["message"]

    # A known name whose labels match nothing, or a range without data, is an empty answer.
    empty = await api.get("/query", params={"selector": 'cpu_usage_percent{host="other"}'})
    assert empty.status_code == 200 and empty.json()["series"] == []
    found = await api.get("/query", params={"selector": 'cpu_usage_percent{host="nas"}'})
    assert found.status_code == 200
    assert found.json()["series"][0]["points"][0][1] == 12.5


async def test_a_resolution_without_a_step_picks_a_step_of_that_resolution(api: Api) -> None:
    now = time.time()
    batch = MetricBatch(
        host="nas",
        plugin="memory",
        ts=now - 5,
        seq=1,
        samples=[Sample("memory_used_bytes", 1024.0, {}, "bytes")],
    )
    async with running_ingest(api.env):
        await stored(api, [batch])
    for resolution, width in (("1h", 3600), ("1m", 60), ("raw", 1)):
        resp = await api.get(
            "/query",
            params={"selector": "memory_used_bytes", "start": "-2h", "resolution": resolution},
        )
        assert resp.status_code == 200, (resolution, resp.text)
        body = resp.json()
        assert body["resolution"] == resolution
        assert body["step_s"] % width == 0 and body["series"][0]["points"]
    # An explicit step that does not fit the resolution is still refused, naming both.
    bad = await api.get(
        "/query", params={"selector": "memory_used_bytes", "resolution": "1h", "step": "90s"}
    )
    assert bad.status_code == 400
    assert "not a multiple of the 1h resolution" in bad.json()["error"]["message"]
