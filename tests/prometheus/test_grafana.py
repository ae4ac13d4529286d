"""compose/grafana: the data source points at the Prometheus API the way Grafana calls it, and
every query of the "Unity host" dashboard (and its host variable) is answered by Unity."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import yaml

from tests.api.conftest import running_api, stored
from tests.helpers import running_ingest
from tests.servers import Env
from unity.schemas import MetricBatch, Sample

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "compose" / "grafana"
NOW = int(time.time()) - 30


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GRAFANA / "dashboards" / "unity-host.json").read_text())
    return loaded


def _expressions() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]


def test_data_source_and_compose_agree() -> None:
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/unity.yml").read_text())
    [unity] = source["datasources"]
    assert unity["type"] == "prometheus"
    assert unity["url"] == "https://api:8765/prometheus"
    # Secrets come from mounted files, never from this file.
    assert all("$__file{/run/secrets/" in v for v in unity["secureJsonData"].values())
    compose = yaml.safe_load((ROOT / "compose/production/compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    assert "api" in compose["services"]
    for volume in grafana["volumes"]:
        source_dir = volume.split(":")[0]
        if source_dir.startswith("../"):
            assert (ROOT / "compose/production" / source_dir).resolve().is_dir(), volume
    needed = set(re.findall(r"/run/secrets/(\w+)", json.dumps(unity)))
    assert needed <= set(grafana["secrets"]) <= set(compose["secrets"])
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/unity.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def test_dashboard_has_a_host_variable_and_uses_the_data_source() -> None:
    dashboard = _dashboard()
    assert dashboard["title"] == "Unity host"
    [host] = dashboard["templating"]["list"]
    assert host["name"] == "host"
    assert host["query"]["query"].startswith("label_values(")
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "unity"
    assert all('host="$host"' in e for e in _expressions())


def _batches() -> list[MetricBatch]:
    out = []
    for i, ago in enumerate((240, 180, 120, 60, 0)):
        ts = NOW - ago

        def batch(
            plugin: str, samples: list[Sample], ts: int = ts, seq: int = i + 1
        ) -> MetricBatch:
            return MetricBatch(host="nas", plugin=plugin, ts=ts, seq=seq, samples=samples)

        out += [
            batch(
                "cpu",
                [Sample("cpu_usage_percent", 10.0 + i, {"mode": m}) for m in ("busy", "user")],
            ),
            batch(
                "memory",
                [
                    Sample(name, 1e9 * (i + 1))
                    for name in ("memory_used_bytes", "memory_cached_bytes", "memory_total_bytes")
                ]
                + [Sample("memory_used_percent", 40.0 + i)],
            ),
            batch("disk", [Sample("disk_used_percent", 60.0, {"mount": "/"})]),
            batch("system", [Sample("system_uptime_seconds", 1000.0 + 60 * i)]),
            batch(
                "diskio",
                [
                    Sample(n, 1e6 * i, {"device": "sda"}, kind="counter")
                    for n in ("diskio_read_bytes", "diskio_written_bytes")
                ],
            ),
            batch(
                "net",
                [
                    Sample(n, 1e5 * i, {"interface": "eth0"}, kind="counter")
                    for n in (
                        "net_received_bytes",
                        "net_sent_bytes",
                        "net_receive_errors_total",
                        "net_receive_drops_total",
                        "net_send_errors_total",
                        "net_send_drops_total",
                    )
                ],
            ),
        ]
    return out


async def test_every_dashboard_query_is_answered(env: Env) -> None:
    async with running_api(env) as api, running_ingest(env):
        await stored(api, _batches())
        read = api.auth("read")
        variable = _dashboard()["templating"]["list"][0]["query"]["query"]
        metric = variable.removeprefix("label_values(").split(",")[0]
        hosts = await api.client.get(
            "/prometheus/api/v1/label/host/values", params={"match[]": metric}, headers=read
        )
        assert hosts.json()["data"] == ["nas"]
        for expr in _expressions():
            query = expr.replace("$host", "nas").replace("$__rate_interval", "2m")
            answer = await api.client.post(
                "/prometheus/api/v1/query_range",
                data={"query": query, "start": NOW - 180, "end": NOW, "step": 60},
                headers=read,
            )
            assert answer.status_code == 200, (expr, answer.text)
            assert answer.json()["data"]["result"], f"no data for {expr}"
