"""Long-running services (ingest, collector, api) with the arq-style lifecycle.

start() connects; SIGTERM or SIGINT sets stop; the work in hand finishes; then close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import msgspec
import uvicorn

from api.app import create_app
from collectors.runner import Collector
from compose.settings import Endpoints, Settings
from ingest.service import Ingest
from sdk import Plugin
from sdk.discovery import discover

log = logging.getLogger(__name__)


def _stop_event() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_ingest(settings: Settings, ep: Endpoints) -> None:
    worker = Ingest(settings, ep)
    await worker.start()
    stop = _stop_event()
    task = asyncio.create_task(worker.run())
    log.info("ingest running on %s", settings.subjects.metrics_stream)
    await stop.wait()
    await worker.stop()
    await task
    await worker.close()
    log.info("ingest stopped: %s", worker.stats)


def load_plugins(settings: Settings) -> list[Plugin]:
    available = discover()
    unknown = [p for p in settings.collect_plugins if p not in available]
    if unknown:
        raise SystemExit(
            f"unknown plugin {unknown[0]!r}; installed: {', '.join(sorted(available))}"
        )
    return [available[name]() for name in settings.collect_plugins]


async def run_collector(settings: Settings, ep: Endpoints | None, once: bool = False) -> None:
    plugins = load_plugins(settings)
    if once:
        # Print what would be published, without touching NATS.
        from sdk.sink import Sink

        for plugin in plugins:
            sink = Sink(plugin.declared())
            plugin.collect(sink)
            sys.stdout.write(msgspec.json.encode(sink.samples).decode() + "\n")
        return
    assert ep is not None, "the collector needs NATS unless --once"
    collector = Collector(settings, ep, plugins)
    await collector.start()
    stop = _stop_event()
    task = asyncio.create_task(collector.run())
    log.info(
        "collector running for host %s: %s", settings.host, ", ".join(settings.collect_plugins)
    )
    await stop.wait()
    await collector.stop()
    await task


def run_api(settings: Settings, ep: Endpoints) -> None:
    app = create_app(settings, ep)
    config = uvicorn.Config(
        app,
        host=settings.api_bind,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()
