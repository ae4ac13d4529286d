"""POST /api/v1/write: remote write 1.0 into JetStream, stored by ingest like any producer's
batches; deduplicated on retry; auth; clear refusals; and a real Prometheus writing into it."""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import cramjam
import pytest
import uvicorn

from tests.api.conftest import Api, running_api
from tests.helpers import running_ingest, wait_for
from tests.prometheus.support import HEADERS, real_prometheus
from tests.servers import Env
from unity.api.remote_write import WriteRequest
from unity.compose.embedded import free_port

NOW_MS = (int(time.time()) - 60) * 1000
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def _body(series: list[tuple[dict[str, str], list[tuple[int, float]]]], **meta: int) -> bytes:
    request = WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name, value in labels.items():
            ts.labels.add(name=name, value=value)
        for t, v in samples:
            ts.samples.add(value=v, timestamp=t)
    for family, kind in meta.items():
        request.metadata.add(type=kind, metric_family_name=family)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


async def _write(api: Api, body: bytes, scope: str | None = "write", **headers: str) -> Any:
    return await api.send("POST", "/write", scope, content=body, headers=HEADERS | headers)


async def _messages(api: Api) -> int:
    stream = api.env.settings.subjects.metrics_stream
    count: int = (await api.js.stream_info(stream)).state.messages
    return count


async def _samples(api: Api) -> int:
    count: int = await api.state.pool.fetchval("SELECT count(*) FROM samples")
    return count


@pytest.fixture
async def api(env: Env) -> AsyncIterator[Api]:
    async with running_api(env) as running, running_ingest(env):
        yield running


async def test_series_map_onto_unity_and_back(api: Api) -> None:
    body = _body(
        [
            (
                {"__name__": "node_load1", "host": "nas", "job": "node", "instance": "nas:9100"},
                [(NOW_MS - 30_000, 0.5), (NOW_MS - 15_000, 0.75), (NOW_MS, STALE)],
            ),
            (
                {"__name__": "up", "instance": "db.lan:9187", "job": "pg"},
                [(NOW_MS, 1.0)],
            ),
            ({"__name__": "scrapes", "plugin": "agent"}, [(NOW_MS, 7.0)]),
            ({"__name__": "http_requests_total", "host": "web"}, [(NOW_MS, 42.0)]),
        ],
        scrapes=1,
    )
    assert (await _write(api, body)).status_code == 204
    await wait_for(lambda: _count_is(api, 5))
    rows = await api.state.pool.fetch(
        "SELECT host, plugin, instance, name, labels::text, kind FROM series ORDER BY name"
    )
    assert [tuple(r) for r in rows] == [
        ("web", "remote_write", "", "http_requests_total", "{}", "counter"),
        ("nas", "remote_write", "nas:9100", "node_load1", '{"job": "node"}', "gauge"),
        ("remote", "agent", "", "scrapes", "{}", "counter"),
        ("db_lan", "remote_write", "db.lan:9187", "up", '{"job": "pg"}', "gauge"),
    ]
    values = await api.state.pool.fetch(
        "SELECT date_part('epoch', time) * 1000 AS t, value FROM samples s"
        " JOIN series r ON r.id = s.series_id WHERE r.name = 'node_load1' ORDER BY time"
    )
    assert [(round(r["t"]), r["value"]) for r in values] == [
        (NOW_MS - 30_000, 0.5),
        (NOW_MS - 15_000, 0.75),
    ]
    # Read back through the Prometheus API: the labels the writer sent, plus host and plugin.
    answer = await api.client.get(
        "/prometheus/api/v1/query",
        params={"query": 'node_load1{job="node"}', "time": NOW_MS / 1000},
        headers=api.auth("read"),
    )
    [item] = answer.json()["data"]["result"]
    assert item["metric"] == {
        "__name__": "node_load1",
        "host": "nas",
        "plugin": "remote_write",
        "instance": "nas:9100",
        "job": "node",
    }
    assert item["value"][1] == "0.75"


async def _count_is(api: Api, n: int) -> bool:
    return await _samples(api) >= n


async def test_a_retried_request_is_stored_once(api: Api) -> None:
    series = [
        ({"__name__": "g", "host": f"h{i}"}, [(NOW_MS - j * 1000, float(j)) for j in range(50)])
        for i in range(30)
    ]
    body = _body(series)
    assert (await _write(api, body)).status_code == 204
    published = await _messages(api)
    assert published >= 30
    assert (await _write(api, body)).status_code == 204
    assert await _messages(api) == published
    await wait_for(lambda: _count_is(api, 1500))
    assert await _samples(api) == 1500


async def test_auth_and_refusals(api: Api) -> None:
    body = _body([({"__name__": "g"}, [(NOW_MS, 1.0)])])
    assert (await _write(api, body, None)).status_code == 401
    assert (await _write(api, body, "read")).status_code == 403
    before = await _messages(api)
    for bad, status, code in (
        (b"not snappy at all", 400, "malformed_body"),
        (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff garbage")), 400, "malformed_body"),
        (_body([({"job": "x"}, [(NOW_MS, 1.0)])]), 400, "bad_series"),
    ):
        answer = await _write(api, bad)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["code"] == code
    gzip = await _write(api, body, **{"Content-Encoding": "gzip"})
    assert gzip.status_code == 400
    assert gzip.json()["error"]["code"] == "unsupported_encoding"
    assert await _messages(api) == before


async def test_non_finite_values_are_counted_not_silently_dropped(api: Api) -> None:
    body = _body([({"__name__": "g", "host": "x"}, [(NOW_MS - 1000, 1.0), (NOW_MS, math.inf)])])
    answer = await _write(api, body)
    assert answer.status_code == 400
    assert "1 samples published" in answer.json()["error"]["message"]
    assert "1 NaN or infinite" in answer.json()["error"]["message"]
    await wait_for(lambda: _count_is(api, 1))


@contextlib.asynccontextmanager
async def _served(api: Api) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(api.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.mark.slow
async def test_a_real_prometheus_writes_into_unity(api: Api) -> None:
    async with _served(api) as port:
        config = f"""
scrape_configs:
  - job_name: self
    scrape_interval: 1s
    static_configs:
      - targets: ["127.0.0.1:{{port}}"]
remote_write:
  - url: http://127.0.0.1:{port}/api/v1/write
    authorization:
      credentials_file: {{dir}}/token
    queue_config:
      batch_send_deadline: 1s
"""
        with real_prometheus(config, {"token": api.tokens["write"]}):

            async def arrived() -> bool:
                n: int = await api.state.pool.fetchval(
                    "SELECT count(*) FROM series WHERE name = 'prometheus_build_info'"
                    " AND plugin = 'remote_write' AND labels->>'job' = 'self'"
                )
                return n > 0

            await wait_for(arrived, within=60)
            answer = await api.client.get(
                "/prometheus/api/v1/query",
                params={"query": 'up{job="self"}'},
                headers=api.auth("read"),
            )
            [item] = answer.json()["data"]["result"]
            # Hosts are subject tokens: the dots of an address become underscores.
            assert item["metric"]["host"] == "127_0_0_1"
            assert item["value"][1] == "1"
