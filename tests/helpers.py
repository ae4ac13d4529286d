"""Helpers shared by tests that run ingest in-process against the session servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from compose.settings import Endpoints
from ingest.service import Ingest
from tests.conftest import Env


@contextlib.asynccontextmanager
async def running_ingest(
    env: Env, ep: Endpoints | None = None, report_interval: float = 0
) -> AsyncIterator[Ingest]:
    """An ingest worker in this process; by default without self-metrics, so that tests count
    exactly what they published."""
    worker = Ingest(env.settings, ep or env.ep, report_interval=report_interval)
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop()
        await task
        await worker.close()


async def wait_for(predicate: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


async def count(env: Env, sql: str) -> int:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        value: int = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()
