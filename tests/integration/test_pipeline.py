"""The data path on real servers: collector -> JetStream -> ingest -> PostgreSQL/Valkey -> API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import msgspec

from tests.helpers import count, running_ingest, wait_for
from tests.servers import Env
from unity.api.app import create_app
from unity.api.tokens import create_token
from unity.collectors.plugins.cpu import CpuPlugin
from unity.collectors.plugins.memory import MemoryPlugin
from unity.collectors.runtime.runner import Collector
from unity.ingest.service import Ingest
from unity.ingest.streams import ensure_consumers, ensure_streams
from unity.schemas import MetricBatch, Sample, encode
from unity.sdk.connection import connect_nats


@contextlib.asynccontextmanager
async def api_client(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(env.settings, env.ep)
    async with app.router.lifespan_context(app):
        # Reads need a token (unless the settings open them).
        pool = app.state.unity.pool
        _, token = await create_token(pool, "pipeline-test", ["read"])
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://unity", headers=headers
        ) as client:
            yield client


async def test_collector_batch_reaches_postgres_valkey_and_api(env: Env) -> None:
    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    await ensure_streams(js, env.settings)
    await ensure_consumers(js, env.settings)
    collector = Collector(env.settings, env.ep, [CpuPlugin(), MemoryPlugin()], interval=60)
    await collector.start()
    try:
        batches = [await collector.run_once(p) for p in collector.plugins]
    finally:
        await collector.stop()
    expected = sum(len(r.batch.samples) for r in batches if r.batch is not None)
    assert expected > 10
    assert all(r.report.status == "ok" for r in batches)

    async with running_ingest(env) as worker:

        async def stored() -> bool:
            return await count(env, "SELECT count(*) FROM samples") == expected

        await wait_for(stored)
        await wait_for(lambda: _runs(env))

        async with api_client(env) as client:
            latest = (await client.get("/api/v1/latest", params={"host": "testhost"})).json()
            assert latest["source"] == "valkey"
            names = {(i["plugin"], i["name"]) for i in latest["items"]}
            assert ("memory", "memory_total_bytes") in names
            assert ("cpu", "cpu_time_seconds") in names
            mem_total = next(i for i in latest["items"] if i["name"] == "memory_total_bytes")
            assert mem_total["unit"] == "bytes" and mem_total["value"] > 0

            history = (
                await client.get("/api/v1/query", params={"name": "cpu_load1", "start": "-1h"})
            ).json()
            assert len(history["series"]) == 1
            assert len(history["series"][0]["points"]) == 1

            health = (await client.get("/api/v1/health")).json()
            assert health["status"] == "ok", health
    assert worker.stats.dead_lettered == 0
    await nc.close()


async def _runs(env: Env) -> bool:
    # The collector also reports on itself (plugin unity-collector): count the two plugins run.
    sql = "SELECT count(*) FROM plugin_runs WHERE status = 'ok' AND plugin IN ('cpu', 'memory')"
    return await count(env, sql) == 2


async def test_redelivered_and_replayed_batches_are_stored_once(env: Env) -> None:
    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    await ensure_streams(js, env.settings)
    await ensure_consumers(js, env.settings)
    batch = MetricBatch(
        host="h1",
        plugin="custom",
        ts=1_790_000_000.0,
        seq=1,
        samples=[Sample("temp", 21.5, {"room": "a"}), Sample("temp", 19.0, {"room": "b"})],
    )
    subject = env.settings.subjects.metrics("h1", "custom")
    # Same content under two Msg-Ids: JetStream keeps both, ingest must store once.
    await js.publish(subject, encode(batch), headers={"Nats-Msg-Id": "a"})
    await js.publish(subject, encode(batch), headers={"Nats-Msg-Id": "b"})
    # Same Msg-Id again: JetStream's duplicate window drops it.
    ack = await js.publish(subject, encode(batch), headers={"Nats-Msg-Id": "b"})
    assert ack.duplicate
    async with running_ingest(env) as worker:
        await wait_for(lambda: _messages(worker, 2))
    assert await count(env, "SELECT count(*) FROM samples") == 2
    assert await count(env, "SELECT count(*) FROM series") == 2
    # The copy went through the staging merge; it was not refused and dead-lettered.
    assert worker.stats.merges >= 1
    assert worker.stats.dead_lettered == 0
    dlq = await js.stream_info(env.settings.subjects.dlq_stream)
    assert dlq.state.messages == 0
    await nc.close()


async def _messages(worker: Ingest, n: int) -> bool:
    return worker.stats.messages >= n


async def test_bad_input_goes_to_dlq_with_reason_and_good_samples_are_kept(env: Env) -> None:
    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    await ensure_streams(js, env.settings)
    await ensure_consumers(js, env.settings)
    subjects = env.settings.subjects
    await js.publish(subjects.metrics("h", "p"), b"{not json")
    mixed = msgspec.json.encode(
        {
            "host": "h",
            "plugin": "p",
            "samples": [
                {"name": "ok_metric", "value": 1.0},
                {"name": "bad name!", "value": 2.0},
            ],
        }
    )
    await js.publish(subjects.metrics("h", "p"), mixed)
    async with running_ingest(env) as worker:
        await wait_for(lambda: _messages(worker, 2))
    assert worker.stats.dead_lettered == 2
    assert await count(env, "SELECT count(*) FROM samples") == 1

    sub = await js.subscribe(f"{env.root}.dlq.>", stream=subjects.dlq_stream, ordered_consumer=True)
    got = [await sub.next_msg(timeout=5) for _ in range(2)]
    reasons = {m.headers["Unity-Reason"] for m in got if m.headers}
    assert reasons == {"malformed", "bad_name"}
    assert {m.data for m in got} == {b"{not json", mixed}
    assert all(m.headers and m.headers["Unity-Subject"] == subjects.metrics("h", "p") for m in got)
    await nc.close()
