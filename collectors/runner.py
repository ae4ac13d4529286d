"""The collector process: runs each plugin on its interval and publishes batch and health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from nats.aio.client import Client as NATS

from compose.connect import connect_nats
from compose.settings import Endpoints, Settings
from sdk import Plugin, Publisher
from sdk.runner import RunResult, collect_once

log = logging.getLogger(__name__)


class Collector:
    """Schedules plugins aligned to the clock; one plugin's failure never stops another."""

    def __init__(
        self,
        settings: Settings,
        ep: Endpoints,
        plugins: list[Plugin],
        *,
        interval: float | None = None,
        timeout: float | None = None,
    ) -> None:
        if not plugins:
            raise ValueError("the collector needs at least one plugin")
        self.settings = settings
        self.ep = ep
        self.plugins = plugins
        self.interval = interval or settings.collect_interval
        self.timeout = timeout or max(1.0, self.interval * 0.8)
        self.host = settings.host
        self._nc: NATS | None = None
        self._publisher: Publisher | None = None
        self._stopping = asyncio.Event()
        self.runs = 0

    async def start(self) -> None:
        self._nc = await connect_nats(self.ep, f"unity-collector@{self.host}")
        self._publisher = Publisher(self._nc.jetstream(), self.settings.subjects)
        for plugin in self.plugins:
            await asyncio.to_thread(plugin.setup)

    async def run(self) -> None:
        """Run until stop(); each plugin on its own task."""
        await asyncio.gather(*(self._loop(p) for p in self.plugins))

    async def stop(self) -> None:
        self._stopping.set()
        if self._publisher is not None:
            await self._publisher.flush()
        for plugin in self.plugins:
            await asyncio.to_thread(plugin.teardown)
        if self._nc is not None:
            await self._nc.drain()

    async def _loop(self, plugin: Plugin) -> None:
        while not self._stopping.is_set():
            await self.run_once(plugin)
            now = time.time()
            next_tick = math.floor(now / self.interval + 1) * self.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), next_tick - now)

    async def run_once(self, plugin: Plugin) -> RunResult:
        """Collect once, publish the batch (if any) and the health report."""
        assert self._publisher is not None, "start() first"
        result = await collect_once(plugin, self.host, self.timeout)
        if result.batch is not None:
            await self._publisher.publish_batch(result.batch)
        if result.report.status != "ok":
            log.warning("plugin %s failed: %s", plugin.id, result.report.message)
        await self._publisher.publish_health(result.report, result.seq)
        self.runs += 1
        return result
