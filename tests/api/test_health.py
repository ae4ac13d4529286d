"""``/health`` and ``/ready``: dependencies with their status, and the ingest consumers' lag."""

from __future__ import annotations

from schemas import MetricBatch, Sample
from tests.api.conftest import Api, running_api, without_valkey
from tests.conftest import Env


async def test_ready_reports_consumer_pending_messages(api: Api) -> None:
    for i in range(3):
        await api.publish(MetricBatch(host="h", plugin="p", seq=i, samples=[Sample("x", i)]))
    resp = await api.get("/ready", scope=None)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready"
    assert {c for c, check in body["checks"].items() if check["status"] == "ok"} >= {
        "postgres",
        "valkey",
        "nats",
    }
    lag = {c["stream"]: c for c in body["consumers"]}
    metrics = lag[api.env.settings.subjects.metrics_stream]
    assert metrics["pending"] == 3 and metrics["ack_pending"] == 0
    health = (await api.get("/health", scope=None)).json()
    assert health["status"] == "ok"


async def test_a_dependency_down_is_degraded_and_not_ready(env: Env) -> None:
    async with running_api(without_valkey(env)) as api:
        health = (await api.get("/health", scope=None)).json()
        assert health["status"] == "degraded"
        assert health["checks"]["valkey"]["status"] == "error"
        assert health["checks"]["postgres"]["status"] == "ok"
        ready = await api.get("/ready", scope=None)
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
