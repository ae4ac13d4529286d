"""A plugin's interval changed over the API reaches the running collector without a restart."""

from __future__ import annotations

import asyncio
import time

from collectors.memory import MemoryPlugin
from collectors.runner import Collector
from tests.api.conftest import Api, eventually


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
        await eventually(lambda: collector.watch.applied >= 1)  # the entry registration wrote
        assert slot.spec.interval == 3600  # no interval_s yet: the collector's own
        runs_before = slot.runs
        changed_at = time.monotonic()
        resp = await api.send(
            "PATCH", f"/plugins/{registered.json()['id']}", json={"interval_s": 0.2}
        )
        assert resp.status_code == 200, resp.text
        await eventually(lambda: slot.spec.interval == 0.2)
        applied_after = time.monotonic() - changed_at
        # At an hour's interval no further run would come; at 0.2 s several do.
        await eventually(lambda: slot.runs >= runs_before + 3)
        print(f"\ninterval change applied {applied_after * 1000:.0f} ms after the PATCH")

        off = await api.send("POST", f"/plugins/{registered.json()['id']}/disable")
        assert off.status_code == 200
        await eventually(lambda: not slot.spec.enabled)
    finally:
        await collector.stop()
        await task
