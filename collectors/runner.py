"""The collector process: runs each plugin on its interval and publishes batch and health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from datetime import UTC, datetime

from nats.aio.client import Client as NATS

from compose.connect import connect_nats
from compose.settings import Endpoints, Settings
from schemas import HealthReport, MetricBatch
from sdk import Plugin, Publisher, Sink

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

    async def run_once(self, plugin: Plugin) -> tuple[MetricBatch | None, HealthReport]:
        """Collect once, publish the batch (if any) and the health report."""
        assert self._publisher is not None, "start() first"
        started = time.time()
        sink = Sink(plugin.declared())
        batch: MetricBatch | None = None
        try:
            await asyncio.wait_for(asyncio.to_thread(plugin.collect, sink), self.timeout)
        except TimeoutError:
            status, message = "error", f"collect timed out after {self.timeout:.1f}s"
        except Exception as exc:  # a plugin's failure is reported, never raised
            status, message = "error", f"{type(exc).__name__}: {exc}"
        else:
            status, message = "ok", ""
        duration_ms = (time.time() - started) * 1000
        ts = datetime.fromtimestamp(started, UTC)
        seq = int(started * 1000)  # unique per run, and across restarts (Msg-Id dedup)
        if status == "ok" and sink.samples:
            batch = MetricBatch(
                host=self.host,
                plugin=plugin.id,
                instance=plugin.instance,
                ts=ts,
                seq=seq,
                samples=sink.samples,
            )
            await self._publisher.publish_batch(batch)
        if status != "ok":
            log.warning("plugin %s failed: %s", plugin.id, message)
        report = HealthReport(
            host=self.host,
            plugin=plugin.id,
            instance=plugin.instance,
            ts=ts,
            status=status,  # type: ignore[arg-type]
            message=message,
            duration_ms=round(duration_ms, 3),
            samples=len(sink.samples) if batch else 0,
        )
        await self._publisher.publish_health(report, seq)
        self.runs += 1
        return batch, report
