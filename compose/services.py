"""Long-running services (ingest, collector, api) with the arq-style lifecycle.

start() connects; SIGTERM or SIGINT sets stop; the work in hand finishes; then close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket

import uvicorn

from unity.api.app import create_app
from unity.collectors.runtime.process import serve
from unity.ingest.service import Ingest
from unity.sdk.settings import Endpoints, Settings

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
    from unity.compose.workers import Workers

    return Workers(settings, count).run()


async def run_collector(
    settings: Settings, ep: Endpoints | None, once: bool = False, config_path: str | None = None
) -> int:
    # The collector process itself starts from compose/commands/collector.py, which imports
    # collectors.process directly so that it loads neither the API nor ingest.
    return await serve(settings, ep, once=once, config_path=config_path)


def _api_config(settings: Settings, ep: Endpoints) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, ep),
        host=settings.api_bind,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        # Open live streams must not hold the API up past the supervisor's patience.
        timeout_graceful_shutdown=5,
        ssl_certfile=settings.api_tls_cert or None,
        ssl_keyfile=settings.api_tls_key or None,
    )


def loopback(address: str) -> bool:
    """Whether ``address`` (an IP or ``localhost``) is reachable from this machine only."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def run_api(settings: Settings, ep: Endpoints, workers: int = 1) -> int:
    """Serve the API; with ``workers`` > 1, in that many forked processes on one socket."""
    if not loopback(settings.api_bind) and not settings.api_tls_cert:
        log.error(
            "the API would listen on %s without TLS: set UNITY_API_TLS_CERT and "
            "UNITY_API_TLS_KEY (`unity certs init` makes them), or bind 127.0.0.1",
            settings.api_bind,
        )
        return 2
    if workers <= 1:
        uvicorn.Server(_api_config(settings, ep)).run()
        return 0
    return _run_api_workers(_api_config(settings, ep), workers)


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket created as asyncio's own: with the protocol number set, which is
    what makes asyncio turn Nagle off on accepted connections (uvicorn's ``bind_socket``
    leaves it 0, and answers then wait for the client's delayed ACK, about 40 ms)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _run_api_workers(config: uvicorn.Config, count: int) -> int:
    """Forked workers accepting on one listening socket; the API keeps no state of its own
    (tokens, registry and data live in PostgreSQL, Valkey and NATS), so any worker answers any
    request. Each worker opens its own connections in its lifespan. A worker that exits ends
    the others and the process, non-zero, for the supervisor to restart as one service.
    """
    sock = _listen(config.host, config.port, config.backlog)
    children: set[int] = set()
    stopping = False

    def stop(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for child in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    # Before forking, so that no signal finds the supervisor without its handler.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(count):
        if stopping:
            break
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                uvicorn.Server(config).run(sockets=[sock])
            except BaseException:
                log.exception("API worker %d failed", os.getpid())
                code = 1
            os._exit(code)
        children.add(pid)
    sock.close()
    log.info("API running in %d worker processes %s", count, sorted(children))
    status = 0
    while children:
        pid, code = os.wait()
        children.discard(pid)
        if not stopping:
            code = os.waitstatus_to_exitcode(code)
            log.error("API worker %d exited (status %d); stopping the others", pid, code)
            status = 1
            stop()
    return status
