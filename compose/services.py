"""Long-running services (ingest, collector, api) with the arq-style lifecycle.

start() connects; SIGTERM or SIGINT sets stop; the work in hand finishes; then close.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvicorn

from api.app import create_app
from collectors.process import serve
from compose.settings import Endpoints, Settings
from ingest.service import Ingest

log = logging.getLogger(__name__)

# Below the supervisor's 20 s before SIGKILL; matters when NATS is already gone and a drain
# would otherwise wait for a reconnect forever.
SHUTDOWN_DEADLINE_S = 15.0


def _stop_event() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_ingest(settings: Settings, ep: Endpoints, name: str = "w0") -> None:
    worker = Ingest(settings, ep, name=name)
    await worker.start()
    stop = _stop_event()
    task = asyncio.create_task(worker.run())
    log.info("ingest worker %s running on %s", name, settings.subjects.metrics_stream)
    # A worker that fails ends the process (its supervisor restarts it) instead of idling.
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    await worker.stop()
    try:
        await asyncio.wait_for(_finish(task, worker), SHUTDOWN_DEADLINE_S)
    except TimeoutError:
        # Nothing unacked is lost: JetStream redelivers it to the next worker.
        log.error("ingest worker %s did not stop within %.0fs; exiting", name, SHUTDOWN_DEADLINE_S)
        return
    log.info("ingest worker %s stopped: %s", name, worker.stats)


async def _finish(task: asyncio.Task[None], worker: Ingest) -> None:
    try:
        await task
    finally:
        await worker.close()


def run_ingest_workers(settings: Settings, count: int) -> int:
    """``count`` worker processes on the same durable consumer, supervised by this one."""
    from ingest.workers import Workers

    return Workers(settings, count).run()


async def run_collector(
    settings: Settings, ep: Endpoints | None, once: bool = False, config_path: str | None = None
) -> int:
    # The collector process itself starts from compose/commands/collector.py, which imports
    # collectors.process directly so that it loads neither the API nor ingest.
    return await serve(settings, ep, once=once, config_path=config_path)


def run_api(settings: Settings, ep: Endpoints) -> None:
    app = create_app(settings, ep)
    config = uvicorn.Config(
        app,
        host=settings.api_bind,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        # Open live streams must not hold the API up past the supervisor's patience.
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
