"""``/health`` and ``/ready``: dependencies with their status, and the ingest consumers' lag."""

from __future__ import annotations

from tests.api.conftest import Api, running_api, without_valkey
from tests.servers import Env
from unity.schemas import MetricBatch, Sample
from unity.schemas.storage import DURABLE


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


async def test_ready_reports_redeliveries(api: Api) -> None:
    stream = api.env.settings.subjects.metrics_stream
    await api.publish(MetricBatch(host="h", plugin="p", seq=1, samples=[Sample("x", 1)]))
    # Play a worker that fails the message: refuse it, then take it again and never ack.
    sub = await api.js.pull_subscribe_bind(durable=DURABLE, stream=stream)
    [first] = await sub.fetch(1, timeout=10)
    await first.nak()
    [again] = await sub.fetch(1, timeout=10)
    assert again.metadata.num_delivered == 2
    resp = await api.get("/ready", scope=None)
    lag = {c["stream"]: c for c in resp.json()["consumers"]}[stream]
    assert lag["redelivered"] == 1 and lag["ack_pending"] == 1 and lag["pending"] == 0
    await again.ack()
    await sub.unsubscribe()
