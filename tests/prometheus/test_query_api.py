"""The /prometheus/api/v1 endpoints: answer and error shapes, GET and form POST, auth, the
label mapping, series/labels/values/metadata/buildinfo, and refusals that name what is
unsupported."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Api, running_api, stored
from tests.helpers import running_ingest
from tests.prometheus.support import differences
from tests.servers import Env
from unity.schemas import MetricBatch, Sample

NOW = int(time.time()) - 60
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _batches() -> list[MetricBatch]:
    out = []
    for i in range(5):
        ts = NOW - 240 + 60 * i
        out.append(
            MetricBatch(
                host="nas",
                plugin="ups",
                instance="apc",
                ts=ts,
                seq=i + 1,
                samples=[
                    Sample("ups_load_percent", 10.0 + i, {"instance": "left", "phase": "1"}),
                    Sample("ups_energy_total", 100.0 * i, {}, "joules", "counter"),
                ],
            )
        )
        out.append(
            MetricBatch(
                host="web",
                plugin="cpu",
                ts=ts,
                seq=i + 1,
                samples=[Sample("cpu_usage_percent", 50.0 + i, {"cpu": "total"}, "percent")],
            )
        )
    return out


@pytest.fixture
async def loaded(env: Env) -> AsyncIterator[Api]:
    async with running_api(env) as api, running_ingest(env):
        await stored(api, _batches())
        yield api


async def _get(api: Api, path: str, scope: str | None = "read", **params: Any) -> httpx.Response:
    headers = api.auth(scope) if scope else {}
    return await api.client.get(f"/prometheus/api/v1/{path}", params=params, headers=headers)


async def test_instant_vector_shape_and_label_mapping(loaded: Api) -> None:
    answer = await _get(loaded, "query", query="ups_load_percent", time=NOW)
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "vector"
    [item] = body["data"]["result"]
    # The series' own "instance" label clashes with its instance column: exported_instance.
    assert item["metric"] == {
        "__name__": "ups_load_percent",
        "host": "nas",
        "plugin": "ups",
        "instance": "apc",
        "exported_instance": "left",
        "phase": "1",
    }
    assert item["value"] == [NOW, "14"]


async def test_matchers_on_mapped_labels(loaded: Api) -> None:
    for query, hosts in (
        ('{__name__=~"ups_.*|cpu_.*", host!="web"}', {"nas"}),
        ('{exported_instance="left"}', {"nas"}),
        ('{instance="apc", __name__="ups_energy_total"}', {"nas"}),
        ('cpu_usage_percent{instance=""}', {"web"}),
        ('{plugin=~"c.u"}', {"web"}),
    ):
        body = (await _get(loaded, "query", query=query, time=NOW)).json()
        assert {r["metric"]["host"] for r in body["data"]["result"]} == hosts, query


async def test_range_query_and_form_post_agree(loaded: Api) -> None:
    params = {
        "query": "rate(ups_energy_total[2m])",
        "start": str(NOW - 120),
        "end": str(NOW),
        "step": "30s",
    }
    got = await _get(loaded, "query_range", **params)
    posted = await loaded.client.post(
        "/prometheus/api/v1/query_range", data=params, headers=loaded.auth("read") | FORM
    )
    assert got.status_code == posted.status_code == 200
    assert differences(got.json(), posted.json()) == []
    data = got.json()["data"]
    assert data["resultType"] == "matrix"
    [series] = data["result"]
    assert "__name__" not in series["metric"]
    times = [t for t, _ in series["values"]]
    assert times == [NOW - 120 + 30 * i for i in range(5)]
    # 100 J a minute, extrapolated to the window, per second.
    assert all(abs(float(v) - 100 / 60) < 1e-9 for _, v in series["values"])


async def test_scalar_and_matrix_answers(loaded: Api) -> None:
    scalar = (await _get(loaded, "query", query="1 + 2 * 3", time=NOW)).json()
    assert scalar["data"] == {"resultType": "scalar", "result": [NOW, "7"]}
    matrix = (await _get(loaded, "query", query="cpu_usage_percent[3m]", time=NOW)).json()
    assert matrix["data"]["resultType"] == "matrix"
    assert [v for _, v in matrix["data"]["result"][0]["values"]] == ["51", "52", "53", "54"]
    ranged = await _get(
        loaded, "query_range", query="cpu_usage_percent[3m]", start=NOW - 60, end=NOW, step=60
    )
    assert ranged.status_code == 400
    assert "range vector" in ranged.json()["error"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("holt_winters(cpu_usage_percent[5m], 0.5, 0.5)", "holt_winters"),
        ('label_replace(cpu_usage_percent, "a", "$1", "cpu", "(.*)")', "label_replace"),
        ("max_over_time(cpu_usage_percent[5m:1m])", "subquer"),
        ("cpu_usage_percent @ 1700000000", "@ modifier"),
        ('count_values("v", cpu_usage_percent)', "count_values"),
        ("quantile(0.5, cpu_usage_percent)", "quantile"),
        ("sort(cpu_usage_percent)", "sort"),
    ],
)
async def test_unsupported_is_a_400_naming_it(loaded: Api, query: str, named: str) -> None:
    answer = await _get(loaded, "query", query=query, time=NOW)
    assert answer.status_code == 400
    body = answer.json()
    assert body["status"] == "error"
    assert body["errorType"] == "bad_data"
    assert named in body["error"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"query": "rate(cpu_usage_percent)"}, "expected type matrix"),
        ({"query": "sum(("}, "invalid parameter"),
        ({"query": ""}, "query is empty"),
        ({"query": "1", "time": "yesterday"}, 'invalid parameter "time"'),
    ],
)
async def test_bad_queries(loaded: Api, params: dict[str, str], message: str) -> None:
    answer = await _get(loaded, "query", **params)
    assert answer.status_code == 400
    assert answer.json()["errorType"] == "bad_data"
    assert message in answer.json()["error"]


async def test_range_parameters_are_checked(loaded: Api) -> None:
    base = {"query": "cpu_usage_percent", "start": str(NOW), "end": str(NOW - 60), "step": "15"}
    assert "must not be before" in (await _get(loaded, "query_range", **base)).json()["error"]
    base |= {"end": str(NOW), "step": "0"}
    assert "zero or negative" in (await _get(loaded, "query_range", **base)).json()["error"]
    base |= {"start": str(NOW - 86400 * 30), "step": "1"}
    assert "maximum resolution" in (await _get(loaded, "query_range", **base)).json()["error"]


async def test_many_to_many_is_an_execution_error(loaded: Api) -> None:
    answer = await _get(
        loaded,
        "query",
        query='{host="nas"} + ignoring(phase, exported_instance) {host="nas"}',
        time=NOW,
    )
    assert answer.status_code == 422
    assert answer.json()["errorType"] == "execution"


async def test_auth(loaded: Api) -> None:
    missing = await _get(loaded, "query", scope=None, query="1")
    assert missing.status_code == 401
    assert missing.json()["status"] == "error"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = await loaded.client.get(
        "/prometheus/api/v1/labels", headers={"Authorization": "Bearer not-a-token"}
    )
    assert wrong.status_code == 401


async def test_series_labels_values_metadata_buildinfo(loaded: Api) -> None:
    series = (await _get(loaded, "series", **{"match[]": '{host="web"}'})).json()
    assert series["data"] == [
        {"__name__": "cpu_usage_percent", "cpu": "total", "host": "web", "plugin": "cpu"}
    ]
    no_match = await _get(loaded, "series")
    assert no_match.status_code == 400
    labels = (await _get(loaded, "labels")).json()["data"]
    assert labels == sorted(
        ["__name__", "cpu", "exported_instance", "host", "instance", "phase", "plugin"]
    )
    hosts = (await _get(loaded, "label/host/values")).json()["data"]
    assert hosts == ["nas", "web"]
    names = (await _get(loaded, "label/__name__/values", **{"match[]": '{plugin="ups"}'})).json()[
        "data"
    ]
    assert names == ["ups_energy_total", "ups_load_percent"]
    old = (await _get(loaded, "label/host/values", start=1, end=1000)).json()["data"]
    assert old == []
    metadata = (await _get(loaded, "metadata")).json()["data"]
    assert metadata["ups_energy_total"] == [{"type": "counter", "help": "", "unit": "joules"}]
    assert metadata["cpu_usage_percent"][0]["type"] == "gauge"
    exemplars = await _get(loaded, "query_exemplars", query="cpu_usage_percent")
    assert exemplars.json() == {"status": "success", "data": []}
    info = (await _get(loaded, "status/buildinfo")).json()["data"]
    assert info["version"].startswith("2.")
