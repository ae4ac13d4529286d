"""Replay of part of the streams: one subject and a bounded range restore only that subset,
and a broad filter reads only what ingest reads (not the alerts beside the events)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.helpers import running_ingest, wait_for
from tests.integration.ingest_support import (
    assert_exactly,
    fetchval,
    publish_batches,
    stored,
    streams_ready,
)
from tests.servers import Env
from unity.ingest.replay import Replay
from unity.sdk.connection import pg_pool


async def _ingest_all(env: Env, samples: int) -> None:
    async with running_ingest(env):

        async def all_stored() -> bool:
            return await stored(env) >= samples

        await wait_for(all_stored)


async def _stored_by_host(env: Env) -> dict[str, tuple[int, float]]:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        rows = await conn.fetch(
            "SELECT s.host, count(*) AS n, sum(v.value) AS total FROM samples v"
            " JOIN series s ON s.id = v.series_id GROUP BY s.host"
        )
    finally:
        await conn.close()
    return {r["host"]: (r["n"], r["total"]) for r in rows}


async def test_replay_of_one_subject_up_to_a_time_restores_only_that_subset(env: Env) -> None:
    nc, js = await streams_ready(env)
    early = await publish_batches(js, env, 20)
    # JetStream stamps each message when it stores it: "until" falls between the two parts.
    await asyncio.sleep(0.05)
    until = datetime.now(UTC)
    await asyncio.sleep(0.05)
    late = await publish_batches(js, env, 20, start=20)
    await _ingest_all(env, early.samples + late.samples)
    await fetchval(env, "DELETE FROM samples")
    subject = f"{env.root}.metrics.h1.>"
    pool = await pg_pool(env.ep, max_size=2)
    try:
        replay = Replay(env.settings, js, pool, until - timedelta(hours=1), until, subject)
        assert replay.streams == [env.settings.subjects.metrics_stream]
        total = await replay.count()
        progress = await replay.run()
    finally:
        await pool.close()
    # Host h1 is every fifth message (publish_batches: host h{m % 5}, value m * 1000 + slot).
    wanted = [m for m in range(early.messages) if m % 5 == 1]
    assert total == progress.done == len(wanted)
    value_sum = sum(m * 1000 + i for m in wanted for i in range(100))
    assert await _stored_by_host(env) == {"h1": (len(wanted) * 100, float(value_sum))}
    assert replay.stats.dead == Counter()
    await nc.close()


async def test_a_broad_replay_filter_leaves_the_alerts_alone(env: Env) -> None:
    nc, js = await streams_ready(env)
    published = await publish_batches(js, env, 10)
    alerts = 3
    for i in range(alerts):
        await js.publish(f"{env.root}.alerts.disk_full", b'{"state": "firing", "n": %d}' % i)
    await _ingest_all(env, published.samples)
    await fetchval(env, "DELETE FROM samples")
    pool = await pg_pool(env.ep, max_size=2)
    try:
        since = datetime.now(UTC) - timedelta(hours=1)
        replay = Replay(env.settings, js, pool, since, subject=f"{env.root}.>")
        total = await replay.count()
        progress = await replay.run()
    finally:
        await pool.close()
    # Alerts were neither read nor counted as unknown subjects.
    assert replay.stats.dead == Counter()
    assert total == progress.done == published.messages + published.health
    await assert_exactly(env, published)
    await nc.close()
