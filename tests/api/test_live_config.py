"""A plugin's interval or config changed over the API reaches the running collector without a
restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from nats.aio.msg import Msg

from tests.api.conftest import Api
from tests.helpers import wait_for
from unity.collectors.plugins.memory import MemoryConfig, MemoryPlugin
from unity.collectors.runtime.runner import Collector
from unity.schemas import MetricBatch, decode


async def test_interval_change_over_the_api_is_applied_by_the_running_collector(api: Api) -> None:
    collector = Collector(api.env.settings, api.env.ep, [MemoryPlugin()], interval=3600)
    await collector.start()
    task = asyncio.create_task(collector.run())
    try:
        slot = collector.slots["memory"]
        registered = await api.send(
            "POST", "/plugins", json={"host": api.env.settings.host, "plugin": "memory"}
        )
        assert registered.status_code == 201, registered.text
        await wait_for(lambda: collector.watch.applied >= 1)  # the entry registration wrote
        assert slot.spec.interval == 3600  # no interval_s yet: the collector's own
        runs_before = slot.runs
        changed_at = time.monotonic()
        resp = await api.send(
            "PATCH", f"/plugins/{registered.json()['id']}", json={"interval_s": 0.2}
        )
        assert resp.status_code == 200, resp.text
        await wait_for(lambda: slot.spec.interval == 0.2)
        applied_after = time.monotonic() - changed_at
        # At an hour's interval no further run would come; at 0.2 s several do.
        await wait_for(lambda: slot.runs >= runs_before + 3)
        print(f"\ninterval change applied {applied_after * 1000:.0f} ms after the PATCH")

        off = await api.send("POST", f"/plugins/{registered.json()['id']}/disable")
        assert off.status_code == 200
        await wait_for(lambda: not slot.spec.enabled)
    finally:
        await collector.stop()
        await task


FIXTURE_PROC = Path(__file__).parents[1] / "collectors/testdata/memory/no-swap/proc"
FIXTURE_TOTAL = 2_048_000 * 1024  # MemTotal of that tree, in bytes


async def test_config_put_over_the_api_is_applied_by_the_running_collector(api: Api) -> None:
    totals: list[float] = []

    async def seen(msg: Msg) -> None:
        batch = decode(msg.data, MetricBatch, (msg.headers or {}).get("Content-Type"))
        totals.extend(s.value for s in batch.samples if s.name == "memory_total_bytes")

    host = api.env.settings.host
    nc = api.js._nc
    sub = await nc.subscribe(api.env.settings.subjects.metrics(host, "memory"), cb=seen)
    collector = Collector(api.env.settings, api.env.ep, [MemoryPlugin()], interval=3600)
    await collector.start()
    task = asyncio.create_task(collector.run())
    try:
        slot = collector.slots["memory"]
        schema = {
            "type": "object",
            "properties": {"proc_root": {"type": "string"}},
            "additionalProperties": False,
        }
        registered = await api.send(
            "POST",
            "/plugins",
            json={"host": host, "plugin": "memory", "interval_s": 0.2, "config_schema": schema},
        )
        assert registered.status_code == 201, registered.text
        await wait_for(lambda: len(totals) >= 2)  # the host's own /proc at 0.2 s
        assert FIXTURE_TOTAL not in totals
        url = f"/plugins/{registered.json()['id']}/config"
        refused = await api.send("PUT", url, json={"config": {"proc_root": 7}})
        assert refused.status_code == 422  # the schema guards what the collector gets
        resp = await api.send("PUT", url, json={"config": {"proc_root": str(FIXTURE_PROC)}})
        assert resp.status_code == 200, resp.text
        await wait_for(lambda: FIXTURE_TOTAL in totals)
        assert slot.plugin.config == MemoryConfig(proc_root=str(FIXTURE_PROC))
        # From the swap on, every run reads the new tree.
        n = len(totals)
        await wait_for(lambda: len(totals) >= n + 2)
        assert set(totals[n:]) == {FIXTURE_TOTAL}
    finally:
        await collector.stop()
        await task
        await sub.unsubscribe()
