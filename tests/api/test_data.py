"""Selectors, series, latest (Valkey and the PostgreSQL fallback), query, events, hosts."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator

import pytest

from tests.api.conftest import Api, running_api, stored, without_valkey
from tests.helpers import running_ingest, wait_for
from tests.servers import Env
from unity.api.selectors import SelectorError, parse
from unity.schemas import Event, MetricBatch, Sample, encode

NOW = time.time() - 30


def _disk(host: str, ago: float, seq: int, *used: tuple[str, float]) -> MetricBatch:
    samples = [Sample("disk_used_percent", v, {"mount": m}, "percent") for m, v in used]
    return MetricBatch(host=host, plugin="disk", ts=NOW - ago, seq=seq, samples=samples)


def _net(ago: float, seq: int, value: float) -> MetricBatch:
    sample = Sample("net_bytes", value, {"if": "eth0"}, "bytes", "counter")
    return MetricBatch(host="web", plugin="net", ts=NOW - ago, seq=seq, samples=[sample])


def _batches() -> list[MetricBatch]:
    return [
        _disk("nas-1", 60, 1, ("/", 40.0), ("/data", 41.0)),
        _disk("nas-1", 0, 2, ("/", 50.0)),
        _disk("nas-2", 0, 1, ("/", 70.0)),
        # A counter that resets between the second and third sample.
        _net(120, 1, 1000.0),
        _net(60, 2, 7000.0),
        _net(0, 3, 600.0),
    ]


@pytest.fixture
async def loaded(api: Api) -> AsyncIterator[Api]:
    async with running_ingest(api.env):
        await stored(api, _batches())

        async def cached() -> bool:
            body = (await api.get("/latest", params={"selector": "net_bytes"})).json()
            return bool(body["items"]) and body["items"][0]["value"] == 600.0

        await wait_for(cached)
        yield api


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cpu{", "missing '}'"),
        ('cpu{host="a"', "missing '}'"),
        ("cpu{host}", "expected =, !=, =~ or !~"),
        ('cpu{host=~"("}', "bad regex"),
        ("cpu{host=nas}", "expected a quoted value"),
        ('cpu{host="nas}', "unterminated quoted value"),
        ('cpu{host="a" mount="b"}', "expected ',' or '}'"),
        ('cpu{="a"}', "expected a label name"),
        ("{}", "no metric name and no matchers"),
        ("cpu} x", "unexpected '}'"),
    ],
)
def test_bad_selectors_say_what_and_where(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError, match="bad selector") as info:
        parse(text)
    assert fragment in str(info.value)


def test_selectors_parse_and_match() -> None:
    sel = parse(r'disk_used_percent{host=~"nas.*", mount!="/data", plugin="disk", x=""}')
    assert sel.equal("plugin") == "disk" and sel.equal("host") is None

    @dataclasses.dataclass
    class Item:
        labels: dict[str, str]
        host: str = "nas-1"
        plugin: str = "disk"
        instance: str = ""
        name: str = "disk_used_percent"

    assert sel.matches(Item({"mount": "/"}))
    assert not sel.matches(Item({"mount": "/data"}))
    assert not sel.matches(Item({"mount": "/", "x": "y"}))  # x="": absent or empty
    assert not sel.matches(Item({"mount": "/"}, host="web"))
    assert parse("{__name__='a\\'b'}").equal("name") == "a'b"
    where, params = parse('m{host=~"a|b", k="v"}').sql(3)
    assert where == "s.name = $3 AND s.host ~ $4 AND coalesce(s.labels ->> $5, '') = $6"
    assert params == ["m", "^(?:a|b)$", "k", "v"]


async def test_series_search_by_selector_with_pages(loaded: Api) -> None:
    body = (await loaded.get("/series", params={"selector": '{host=~"nas.*"}'})).json()
    assert [(s["host"], s["labels"]["mount"]) for s in body["items"]] == [
        ("nas-1", "/"),
        ("nas-1", "/data"),
        ("nas-2", "/"),
    ]
    page = (
        await loaded.get("/series", params={"selector": "disk_used_percent", "limit": 2})
    ).json()
    assert len(page["items"]) == 2 and page["next_offset"] == 2
    bad = await loaded.get("/series", params={"selector": "disk{"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_selector"
    # A regex Python accepts and PostgreSQL does not is still the caller's error.
    odd = await loaded.get("/series", params={"selector": '{host=~"(?P<n>x)"}'})
    assert odd.status_code == 400, odd.text


async def test_latest_by_selector_from_valkey(loaded: Api) -> None:
    body = (await loaded.get("/latest", params={"selector": 'disk_used_percent{mount="/"}'})).json()
    assert body["source"] == "valkey"
    assert [(i["host"], i["value"]) for i in body["items"]] == [("nas-1", 50.0), ("nas-2", 70.0)]
    legacy = (await loaded.get("/latest", params={"host": "web"})).json()
    assert [i["name"] for i in legacy["items"]] == ["net_bytes"]
    page = (await loaded.get("/latest", params={"selector": '{plugin="disk"}', "limit": 1})).json()
    assert len(page["items"]) == 1 and page["next_offset"] == 1


async def test_latest_falls_back_to_postgres_when_valkey_is_down(loaded: Api) -> None:
    async with running_api(without_valkey(loaded.env)) as down:
        resp = await down.get("/latest", params={"selector": 'disk_used_percent{mount="/"}'})
        body = resp.json()
        assert body["source"] == "postgres"
        assert [(i["host"], i["value"]) for i in body["items"]] == [
            ("nas-1", 50.0),
            ("nas-2", 70.0),
        ]
        metrics = (await down.client.get("/metrics", headers=down.auth())).text
        assert "unity_api_latest_fallbacks_total 1" in metrics


async def test_query_raw_step_aggregation_and_counter_rate(loaded: Api) -> None:
    start, end = str(NOW - 600), str(NOW + 60)
    body = (
        await loaded.get(
            "/query", params={"selector": '{host="nas-1", mount="/"}', "start": start, "end": end}
        )
    ).json()
    assert [p[1] for p in body["series"][0]["points"]] == [40.0, 50.0]
    assert body["series"][0]["labels"] == {"mount": "/"}

    summed = (
        await loaded.get(
            "/query",
            params={
                "selector": "disk_used_percent",
                "start": start,
                "end": end,
                "step": "1h",
                "agg": "count",
            },
        )
    ).json()
    counts = {
        (s["host"], s["labels"]["mount"]): [p[1] for p in s["points"]] for s in summed["series"]
    }
    assert sum(sum(v) for v in counts.values()) == 4.0
    assert summed["step_s"] == 3600.0

    rate = (
        await loaded.get(
            "/query",
            params={
                "selector": "net_bytes",
                "start": str(NOW - 180),
                "end": end,
                "step": "60s",
                "rate": "true",
            },
        )
    ).json()
    values = [p[1] for p in rate["series"][0]["points"]]
    # 1000 -> 7000 in 60 s is 100/s; the drop to 600 is a reset: 600 in 60 s is 10/s.
    assert values == [100.0, 10.0]
    assert rate["rate"] is True


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"selector": "disk{"}, 400, "bad_selector"),
        ({}, 400, "bad_selector"),
        ({"selector": "x", "start": "yesterday"}, 400, "bad_time"),
        ({"selector": "x", "start": "-1h", "end": "-2h"}, 400, "bad_range"),
        ({"selector": "x", "agg": "median"}, 400, "bad_parameter"),
        ({"selector": "x", "step": "fast"}, 400, "bad_parameter"),
        ({"selector": "x", "start": "1e300"}, 400, "bad_time"),
    ],
)
async def test_query_rejects_bad_parameters(
    api: Api, params: dict[str, str], status: int, code: str
) -> None:
    resp = await api.get("/query", params=params)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code


async def test_points_cap_is_a_clear_error(env: Env) -> None:
    async with running_api(env, api_max_points=100) as api:
        resp = await api.get("/query", params={"selector": "x", "start": "-1h", "step": "1s"})
        assert resp.status_code == 422
        assert resp.json()["error"]["code"] == "too_many_points"
        assert "100" in resp.json()["error"]["message"]


async def test_events_filtered_by_host_kind_and_time(api: Api) -> None:
    subjects = api.env.settings.subjects
    for i, (host, kind) in enumerate((("nas", "smart"), ("nas", "inventory"), ("web", "smart"))):
        event = Event(host=host, plugin="disks", kind=kind, ts=NOW + i, data={"n": i})
        await api.js.publish(subjects.events(host, "disks"), encode(event))
    async with running_ingest(api.env):

        async def all_three() -> bool:
            return len((await api.get("/events")).json()["items"]) == 3

        await wait_for(all_three)
    smart = (await api.get("/events", params={"kind": "smart"})).json()["items"]
    assert [(e["host"], e["data"]) for e in smart] == [("web", {"n": 2}), ("nas", {"n": 0})]
    nas = (await api.get("/events", params={"host": "nas", "limit": 1})).json()
    assert nas["items"][0]["kind"] == "inventory" and nas["next_offset"] == 1
    old = (await api.get("/events", params={"end": str(NOW)})).json()["items"]
    assert old == []


async def test_hosts_overview(loaded: Api) -> None:
    hosts = {h["host"]: h for h in (await loaded.get("/hosts")).json()["items"]}
    assert set(hosts) == {"nas-1", "nas-2", "web"}
    assert hosts["nas-1"]["series"] == 2 and hosts["nas-1"]["plugins"] == ["disk"]
    assert hosts["web"]["last_seen"] is not None


async def test_metrics_exposition_with_latest_values(loaded: Api) -> None:
    resp = await loaded.client.get(
        "/metrics", params={"latest": "true", "selector": "net_bytes"}, headers=loaded.auth()
    )
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.text
    assert "# TYPE net_bytes counter" in text
    assert 'net_bytes{host="web",plugin="net",if="eth0"} 600.0' in text
    assert 'unity_api_requests_total{method="GET",route="/latest",status="200"}' in text
    assert (
        'unity_api_request_duration_seconds_bucket{method="GET",route="/latest",le="+Inf"}' in text
    )
    assert (await loaded.client.get("/metrics")).status_code == 401


async def test_oversize_bodies_are_413(api: Api) -> None:
    big = json.dumps({"host": "h", "plugin": "p", "description": "x" * 2_000_000})
    resp = await api.send(
        "POST", "/plugins", content=big, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(40):
            yield b"x" * 50_000

    resp = await api.send("POST", "/plugins", content=chunks())
    assert resp.status_code == 413
