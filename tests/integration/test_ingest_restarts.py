"""The failure model: PostgreSQL or NATS restarts while ingest drains a backlog, and every
sample is still stored exactly once.

Each test restarts a private server (not the session's), disturbing no other test.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import on_nats, running_worker, wait_for
from tests.integration.ingest_support import (
    assert_exactly,
    dlq_size,
    publish_batches,
    stored,
    streams_ready,
)
from tests.servers import Env, isolated_settings
from unity.compose import migrate
from unity.compose.embedded import NatsServer, PostgresServer, free_port

pytestmark = pytest.mark.slow

MESSAGES = 600


@pytest.fixture
def server_dir() -> Iterator[Path]:
    # Not tmp_path: PostgreSQL runs as an unprivileged account when tests run as root, and
    # pytest's folders are private to root.
    data = Path(tempfile.mkdtemp(prefix="unity-restart-"))
    data.chmod(0o711)
    yield data
    shutil.rmtree(data, ignore_errors=True)


async def _drain_a_quarter(env: Env, samples: int) -> int:
    async def a_quarter() -> bool:
        return await stored(env) >= samples // 4

    await wait_for(a_quarter, within=60, every=0.01)
    return await stored(env)


async def _drain_all(env: Env, samples: int) -> None:
    async def all_stored() -> bool:
        return await stored(env) >= samples

    await wait_for(all_stored, within=120)


async def test_a_postgres_restart_during_ingest_loses_and_doubles_nothing(
    env: Env, server_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = PostgresServer(server_dir, free_port(), uuid.uuid4().hex, "nobody")
    await asyncio.to_thread(server.start)
    try:
        ep = replace(
            env.ep,
            database_url=f"postgresql://unity@127.0.0.1:{server.port}/unity",
            database_password=server.password,
        )
        await migrate.upgrade(ep)
        private = Env(env.settings, ep, env.root)
        # Small fetches for many commits in flight; a short ack wait for quick redeliveries.
        settings = isolated_settings(ep, env.root, ingest_fetch=20, ingest_ack_wait_s=3.0)
        nc, js = await streams_ready(private)
        published = await publish_batches(js, private, MESSAGES)
        caplog.set_level(logging.WARNING)
        async with running_worker(settings, ep) as worker:
            before = await _drain_a_quarter(private, published.samples)
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(4)  # down long enough for several retries
            await asyncio.to_thread(server.start)
            await _drain_all(private, published.samples)
        assert before < published.samples, "the backlog was drained before the restart"
        # The outage was met: writes failed and were retried, said when it started and ended
        # (at most once per puller), with no traceback per attempt from asyncpg's pool.
        failing = [r.getMessage() for r in caplog.records if "write failed" in r.getMessage()]
        assert 1 <= len(failing) <= settings.ingest_pullers + 1, failing
        assert any("writes succeed again" in r.getMessage() for r in caplog.records)
        noise = [(r.name, r.getMessage()) for r in caplog.records if r.name.startswith("asyncpg")]
        assert noise == []
        await assert_exactly(private, published)
        assert worker.stats.dead_lettered == 0
        assert await dlq_size(js, private) == 0
        await nc.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_nats_restart_during_ingest_loses_and_doubles_nothing(
    env: Env, server_dir: Path
) -> None:
    server = NatsServer(server_dir, free_port(), "unity", uuid.uuid4().hex)
    await asyncio.to_thread(server.start)
    try:
        ep = on_nats(env.ep, server)
        private = Env(env.settings, ep, env.root)
        settings = isolated_settings(ep, env.root, ingest_fetch=20, ingest_ack_wait_s=3.0)
        nc, js = await streams_ready(private)
        published = await publish_batches(js, private, MESSAGES)
        async with running_worker(settings, ep) as worker:
            before = await _drain_a_quarter(private, published.samples)
            # The same store and port: streams, consumers and their acks survive the restart.
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            await _drain_all(private, published.samples)
        assert before < published.samples, "the backlog was drained before the restart"
        assert nc.stats["reconnects"] >= 1
        await assert_exactly(private, published)
        assert worker.stats.dead_lettered == 0
        assert await dlq_size(js, private) == 0
        await nc.close()
    finally:
        await asyncio.to_thread(server.stop)
