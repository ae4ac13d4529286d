"""Helpers shared by tests that run ingest in-process or need a private nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg

from tests.servers import Env
from unity.compose.embedded import NatsServer, free_port
from unity.ingest.service import Ingest
from unity.sdk.settings import Endpoints, Settings


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, ep: Endpoints, report_interval: float = 0
) -> AsyncIterator[Ingest]:
    """An ingest worker in this process; by default without self-metrics, so that tests count
    exactly what they published."""
    worker = Ingest(settings, ep, report_interval=report_interval)
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop()
        await task
        await worker.close()


def running_ingest(
    env: Env, ep: Endpoints | None = None, report_interval: float = 0
) -> contextlib.AbstractAsyncContextManager[Ingest]:
    """``running_worker`` on the test's own settings (and servers, unless ``ep`` is given)."""
    return running_worker(env.settings, ep or env.ep, report_interval)


@contextlib.contextmanager
def private_nats(prefix: str = "unity-nats-") -> Iterator[NatsServer]:
    """A nats-server of the test's own (the session one is shared), stopped and removed after."""
    data = Path(tempfile.mkdtemp(prefix=prefix))
    server = NatsServer(data, free_port(), "unity", uuid.uuid4().hex)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def on_nats(ep: Endpoints, server: NatsServer) -> Endpoints:
    """``ep`` with its NATS swapped for ``server`` (a private one), the rest unchanged."""
    return replace(
        ep,
        nats_url=f"nats://127.0.0.1:{server.port}",
        nats_user=server.user,
        nats_password=server.password,
    )


async def wait_for(
    check: Callable[[], bool | Awaitable[bool]],
    within: float = 60.0,
    what: str = "",
    *,
    every: float = 0.05,
    state: Callable[[], object] | None = None,
) -> None:
    """Poll until ``check`` (sync or async) holds: the one poll-until of the suite.

    ``within`` is a guard against hangs, never a timing assertion. On timeout the error names
    ``what`` (else the check's name) and shows ``state()`` when given.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within

    async def holds() -> bool:
        result = check()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    while not await holds():
        if loop.time() > deadline:
            name = what or getattr(check, "__name__", "condition")
            shown = f"; state: {state()}" if state is not None else ""
            raise AssertionError(f"{name} not met within {within}s{shown}")
        await asyncio.sleep(every)


async def count(env: Env, sql: str) -> int:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        value: int = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()
