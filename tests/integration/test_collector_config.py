"""Live config: the collector follows the registry's KV bucket without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import msgspec
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from tests.helpers import wait_for
from tests.servers import Env
from unity.collectors.plugins.cpu import CpuConfig
from unity.collectors.runtime.config import parse_config
from unity.collectors.runtime.runner import Collector
from unity.sdk.connection import connect_nats
from unity.sdk.discovery import discover


@contextlib.asynccontextmanager
async def running(collector: Collector) -> AsyncIterator[Collector]:
    await collector.start()
    task = asyncio.create_task(collector.run())
    try:
        yield collector
    finally:
        await collector.stop(flush_timeout=2)
        await task


@contextlib.asynccontextmanager
async def bucket(env: Env) -> AsyncIterator[KeyValue]:
    nc = await connect_nats(env.ep, "test-registry")
    js = nc.jetstream()
    name = env.settings.subjects.config_bucket
    try:
        kv = await js.key_value(name)
    except BucketNotFoundError:
        kv = await js.create_key_value(bucket=name, history=5)
    try:
        yield kv
    finally:
        with contextlib.suppress(Exception):
            await js.delete_key_value(name)
        await nc.close()


def put(kv: KeyValue, key: str, **value: object) -> asyncio.Future[int]:
    return asyncio.ensure_future(kv.put(key, msgspec.json.encode(value)))


async def test_interval_enable_and_plugin_config_change_without_restart(env: Env) -> None:
    raw = {
        "agent": {"host": "testhost", "interval": 60, "self_metrics": False},
        "plugins": {"cpu": {"interval": 60}, "memory": {"interval": 60}},
    }
    config = parse_config(raw, discover(), "testhost")
    collector = Collector(env.settings, env.ep, config=config)
    async with bucket(env) as kv, running(collector) as c:
        cpu = c.slots["cpu"]
        assert cpu.spec.interval == 60

        # Interval: from 60 s to 0.3 s, and runs follow at once.
        await put(kv, "testhost.cpu._", enabled=True, interval_s=0.3, config={}, revision=1)
        await wait_for(lambda: cpu.spec.interval == 0.3)
        await wait_for(lambda: cpu.runs >= 3)
        steps = [t.due for t in c.timings if t.key == "cpu"]
        assert all(round((b - a) / 0.3) == 1 for a, b in itertools.pairwise(steps))

        # Plugin config: percpu off, applied between runs by a new plugin instance.
        await put(kv, "testhost.cpu._", enabled=True, interval_s=0.3, config={"percpu": False})
        await wait_for(lambda: cpu.plugin.config == CpuConfig(percpu=False))
        runs = cpu.runs
        await wait_for(lambda: cpu.runs >= runs + 2)
        result = await c.run_once(cpu.plugin)
        assert result.batch is not None
        assert not any(s.name == "cpu_core_time_seconds" for s in result.batch.samples)

        # A config the plugin rejects is refused; the running one stays.
        await put(kv, "testhost.cpu._", enabled=True, interval_s=0.3, config={"percpu": "x"})
        await put(kv, "testhost.memory._", enabled=False)
        await wait_for(lambda: not c.slots["memory"].spec.enabled)
        assert cpu.plugin.config == CpuConfig(percpu=False)

        # Disable: no more runs.
        await put(kv, "testhost.cpu._", enabled=False)
        await wait_for(lambda: not cpu.spec.enabled)
        await asyncio.sleep(0.4)  # a run already started may finish
        stopped_at = cpu.runs
        await asyncio.sleep(1.0)
        assert cpu.runs == stopped_at

        # Enable a plugin the file did not list: it starts, with the registry's interval.
        await put(
            kv, "testhost.net.lan", enabled=True, interval_s=0.3, config={"connections": False}
        )
        await wait_for(lambda: "net:lan" in c.slots and c.slots["net:lan"].runs >= 1)
        assert c.slots["net:lan"].plugin.instance == "lan"

        # Keys of another host are not ours.
        await put(kv, "otherhost.memory._", enabled=True, interval_s=0.3)
        # Deleting the key gives the file config back.
        await kv.delete("testhost.memory._")
        await wait_for(lambda: c.slots["memory"].spec.enabled)
        assert c.slots["memory"].spec.interval == 60
        assert c.watch.applied >= 6
