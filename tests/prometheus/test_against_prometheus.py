"""The same series in Unity and in a real Prometheus 2.42: every query of the corpus must give
the same series and values, point by point, instant and range."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.api.conftest import running_api
from tests.helpers import running_ingest, wait_for
from tests.prometheus.support import (
    HEADERS,
    differences,
    generate,
    points,
    real_prometheus,
    write_requests,
)
from tests.servers import Env
from unity.ingest.maintenance import maintain

pytestmark = pytest.mark.slow

CORPUS = [
    # selectors, the four matchers, offset
    "node_load1",
    'node_load1{host="beta"}',
    'node_load1{host!="beta"}',
    'node_load1{host=~"al.*|gamma"}',
    'node_load1{host!~"al.*"}',
    '{__name__=~"node_load1|temp_celsius", host="alpha"}',
    "temp_celsius offset 10m",
    'http_requests_total{instance="web-1", code!="500"}',
    # range functions
    "rate(net_bytes_total[5m])",
    "rate(net_bytes_total[1m])",
    "irate(net_bytes_total[5m])",
    "increase(net_bytes_total[10m])",
    'increase(http_requests_total{code="500"}[15m])',
    "increase(net_bytes_total[1h])",
    "delta(temp_celsius[10m])",
    "delta(node_load1[3m])",
    "idelta(temp_celsius[2m])",
    "rate(net_bytes_total[5m] offset 5m)",
    "avg_over_time(node_load1[5m])",
    "avg_over_time(node_load1[1h])",
    "sum_over_time(temp_celsius[10m])",
    "count_over_time(node_load1[7m])",
    "min_over_time(temp_celsius[10m])",
    "max_over_time(temp_celsius[10m])",
    "last_over_time(node_load1[10m])",
    "present_over_time(node_load1[2m])",
    "stddev_over_time(temp_celsius[10m])",
    "stdvar_over_time(node_load1[10m])",
    "quantile_over_time(0.9, temp_celsius[10m])",
    "changes(node_load1[10m])",
    # samples on minute edges: at aligned steps these windows are read from the rollups
    "sum_over_time(aligned_gauge[5m])",
    "count_over_time(aligned_gauge[5m])",
    "min_over_time(aligned_gauge[10m])",
    "max_over_time(aligned_gauge[10m] offset 3m)",
    "last_over_time(aligned_gauge[5m])",
    "avg_over_time(aligned_gauge[1h])",
    "present_over_time(aligned_gauge[4m])",
    "max_over_time(temp_celsius[4h])",
    "count_over_time(aligned_gauge[4h])",
    "resets(net_bytes_total[30m])",
    # aggregations
    "sum(rate(net_bytes_total[5m]))",
    "sum by (host) (rate(net_bytes_total[5m]))",
    "sum without (device) (rate(net_bytes_total[5m]))",
    "sum by (host, code) (rate(http_requests_total[5m]))",
    "avg by (host) (temp_celsius)",
    "avg(node_load1)",
    "min by (sensor) (temp_celsius)",
    "max without (host) (temp_celsius)",
    "count by (host) (http_requests_total)",
    "count(node_load1)",
    "topk(2, node_load1)",
    "bottomk(1, temp_celsius)",
    "topk by (host) (1, rate(http_requests_total[5m]))",
    "bottomk without (sensor) (1, temp_celsius)",
    "count by (host) (temp_celsius > 45)",
    "stddev by (host) (temp_celsius)",
    "stdvar(node_load1)",
    "group by (host) (temp_celsius)",
    # binary operators with scalars, comparisons and bool
    "node_load1 * 2",
    "2 - node_load1",
    "temp_celsius / 10 + 1",
    "node_load1 ^ 2",
    "temp_celsius % 7",
    "-node_load1",
    "1 + 2 * 3",
    "node_load1 > 2",
    "node_load1 > bool 2",
    "3 < node_load1",
    "temp_celsius >= 50",
    "temp_celsius != bool 45",
    "sum(node_load1) > bool 5",
    'rate(net_bytes_total{device="eth0"}[5m]) * 8',
    # between vectors: on, ignoring, group_left, group_right, set operators
    'sum by (host) (rate(http_requests_total{code="500"}[5m]))'
    " / sum by (host) (rate(http_requests_total[5m]))",
    'rate(http_requests_total{code="500"}[5m])'
    ' / ignoring(code) rate(http_requests_total{code="200"}[5m])',
    "temp_celsius - on(host) group_left node_load1",
    "temp_celsius / on(host) group_left(plugin) node_load1",
    "node_load1 + on(host) group_right sum by (host, sensor) (temp_celsius)",
    "temp_celsius > on(host) group_left node_load1 * 20",
    'node_load1 and on(host) temp_celsius{sensor="cpu"} > 45',
    "node_load1 or node_load1 offset 10m",
    "node_load1 unless on(host) node_load1 > 3",
    "node_load1 * on() group_left vector(2)",
    "node_load1 - node_load1 offset 5m",
    # functions of instant vectors
    "abs(node_load1 - 2)",
    "clamp(temp_celsius, 40, 50)",
    "clamp_min(node_load1, 2)",
    "clamp_max(node_load1, 2)",
    "round(temp_celsius)",
    "round(temp_celsius, 5)",
    "round(node_load1, 0.1)",
    "ceil(node_load1)",
    "floor(node_load1)",
    "sqrt(node_load1)",
    "ln(node_load1 + 1)",
    "log2(node_load1 + 1)",
    "log10(temp_celsius)",
    "exp(node_load1 / 10)",
    "sgn(node_load1 - 2)",
    "scalar(sum(node_load1))",
    "node_load1 / scalar(count(node_load1))",
    "vector(1)",
    "time() - 1000",
    "histogram_quantile(0.9, rate(request_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(request_seconds_bucket[5m])))",
]
# Only instant queries can answer a range vector.
INSTANT_ONLY = ["node_load1[2m]", 'net_bytes_total{host="beta"}[1m] offset 3m']
# Refused by both, with the same status and errorType: bad syntax or types, a range vector as
# a range query's answer, and a vector match that is many-to-many.
REFUSED = [
    ("query", "sum(rate(node_load1))"),
    ("query", "node_load1 +"),
    ("query_range", "node_load1[5m]"),
    ("query", "node_load1 + on(host) temp_celsius"),
    ("query_range", "temp_celsius - on(host) group_left node_load1 * on(host) temp_celsius"),
]


async def test_corpus_matches_prometheus(env: Env) -> None:
    end = (int(time.time()) - 120) * 1000 + 123
    start = end - 120 * 60_000
    data = generate(end)
    bodies = list(write_requests(data))
    expected = sum(len(points) for points in data.values())
    assert len(CORPUS) + len(INSTANT_ONLY) >= 60
    with real_prometheus() as prom:
        async with (
            running_api(env) as api,
            running_ingest(env),
            httpx.AsyncClient(base_url=prom.url, timeout=30) as real,
        ):
            for body in bodies:
                theirs = await real.post("/api/v1/write", content=body, headers=HEADERS)
                assert theirs.status_code == 204, theirs.text
                ours = await api.send("POST", "/write", "write", content=body, headers=HEADERS)
                assert ours.status_code == 204, ours.text

            async def stored() -> bool:
                n: int = await api.state.pool.fetchval("SELECT count(*) FROM samples")
                return n >= expected

            await wait_for(stored, within=60)
            # The rollups stored up to their watermark, computed from raw rows after it.
            async with api.state.pool.acquire() as conn:
                await maintain(conn, env.settings)
            read = api.auth("read")

            compared: dict[str, int] = {}

            async def both(path: str, params: dict[str, Any]) -> list[str]:
                mine = await api.client.get(
                    f"/prometheus/api/v1/{path}", params=params, headers=read
                )
                real_answer = await real.get(f"/api/v1/{path}", params=params)
                answer = real_answer.json()
                compared[params["query"]] = compared.get(params["query"], 0) + points(answer)
                return differences(mine.json(), answer)

            report: dict[str, list[str]] = {}
            minute, hour = 60_000, 3_600_000
            aligned = (start + 70 * minute) // minute * minute
            instants = [
                end - 30_000,
                start + 55 * 60_000,
                start + 100 * 60_000 + 7_500,
                # Minute and hour edges: windows of whole minutes come from the rollups.
                (end - 17 * minute) // minute * minute,
                end // hour * hour,
            ]
            ranges = [
                (start + 10 * 60_000, end, "60"),
                (start + 40 * 60_000, start + 75 * 60_000, "37.5"),
                (start, end, "5m"),
                (aligned, end // minute * minute, "300"),
            ]
            for query in CORPUS + INSTANT_ONLY:
                found: list[str] = []
                for at in instants:
                    found += [
                        f"instant @{at}: {d}"
                        for d in await both("query", {"query": query, "time": at / 1000})
                    ]
                if query not in INSTANT_ONLY:
                    for lo, hi, step in ranges:
                        params = {
                            "query": query,
                            "start": lo / 1000,
                            "end": hi / 1000,
                            "step": step,
                        }
                        found += [
                            f"range {lo}..{hi} step {step}: {d}"
                            for d in await both("query_range", params)
                        ]
                if found:
                    report[query] = found
            for path, query in REFUSED:
                refused: dict[str, Any] = {"query": query, "time": end / 1000, "step": "60"}
                refused |= {"start": start / 1000, "end": end / 1000}
                mine = await api.client.get(
                    f"/prometheus/api/v1/{path}", params=refused, headers=read
                )
                real_answer = await real.get(f"/api/v1/{path}", params=refused)
                assert real_answer.status_code >= 400, (query, real_answer.text)
                ours_kind = (mine.status_code, mine.json().get("errorType"))
                theirs_kind = (real_answer.status_code, real_answer.json().get("errorType"))
                if ours_kind != theirs_kind:
                    report[query] = [f"refusal: unity {mine.text} / prometheus {real_answer.text}"]
    # An empty answer on both sides would compare equal: every query must have had points.
    empty = [q for q in CORPUS + INSTANT_ONLY if not compared.get(q)]
    assert not empty, f"queries without any point to compare: {empty}"
    print(f"compared {sum(compared.values())} points over {len(compared)} queries")
    summary = "\n".join(
        f"{q}: {len(d)} differences, first: " + "; ".join(d[:3]) for q, d in report.items()
    )
    assert not report, (
        f"{len(report)} of {len(CORPUS) + len(INSTANT_ONLY)} queries differ:\n{summary}"
    )
