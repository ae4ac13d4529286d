"""The durable consumer: updated to ingest's settings at start, and a batch held longer than
the ack wait is kept from redelivery with in_progress()."""

from __future__ import annotations

import asyncio

import asyncpg
from nats.js.api import AckPolicy, ConsumerConfig

from tests.helpers import running_ingest, running_worker, wait_for
from tests.integration.ingest_support import (
    BASE_TS,
    assert_exactly,
    consumers,
    publish_batches,
    stored,
    streams_ready,
)
from tests.servers import Env, isolated_settings
from unity.ingest.streams import ensure_streams, ingest_filters
from unity.schemas.storage import DURABLE
from unity.sdk.connection import connect_nats

ACK_WAIT_S = 2.0


async def test_start_updates_an_existing_consumer_to_ingest_settings(env: Env) -> None:
    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    await ensure_streams(js, env.settings)
    # As an older version or someone by hand would have left it: the server's defaults, and
    # one filter per stream (no line protocol, no health).
    root = env.root
    for stream, kind in (
        (env.settings.subjects.metrics_stream, "metrics"),
        (env.settings.subjects.events_stream, "events"),
    ):
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=DURABLE,
                ack_policy=AckPolicy.EXPLICIT,
                max_ack_pending=1000,
                ack_wait=30.0,
                filter_subject=f"{root}.{kind}.>",
            ),
        )
    before = await consumers(js, env)
    assert [(c.config.max_ack_pending, c.config.ack_wait) for c in before] == [(1000, 30.0)] * 2
    line = f"room,room=office temp=21.5 {int(BASE_TS) * 10**9}"
    await js.publish(f"{root}.lp.myhost", line.encode())
    async with running_ingest(env):
        after = await consumers(js, env)

        # Line protocol is read now: the filters were updated too.
        async def lp_stored() -> bool:
            return await stored(env, "telegraf") == 1

        await wait_for(lp_stored, within=30)
    settings = env.settings
    assert settings.ingest_max_ack_pending != 1000 and settings.ingest_ack_wait_s != 30.0
    for info, filters in zip(after, ingest_filters(settings).values(), strict=True):
        config = info.config
        assert config.max_ack_pending == settings.ingest_max_ack_pending
        assert config.ack_wait == settings.ingest_ack_wait_s
        assert config.filter_subjects == filters and not config.filter_subject
        assert config.max_deliver == settings.ingest_max_deliver
    await nc.close()


async def test_a_batch_held_past_the_ack_wait_is_not_redelivered(env: Env) -> None:
    settings = isolated_settings(env.ep, env.root, ingest_ack_wait_s=ACK_WAIT_S)
    nc, js = await streams_ready(env)
    # One message: one puller holds it, the other keeps pulling and would get it again if the
    # server thought it lost.
    published = await publish_batches(js, env, 1)
    locker = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE samples IN ACCESS EXCLUSIVE MODE")
        async with running_worker(settings, env.ep) as worker:
            # Released before the worker stops, whatever happens: its stop waits for the commit.
            try:

                async def copy_waits() -> bool:
                    waiting = await locker.fetchval(
                        "SELECT count(*) FROM pg_locks"
                        " WHERE NOT granted AND relation = 'samples'::regclass"
                    )
                    return bool(waiting)

                await wait_for(copy_waits, within=30)
                await asyncio.sleep(3 * ACK_WAIT_S)
                metrics, _ = await consumers(js, env)
            finally:
                await locker.close()
            assert metrics.config.ack_wait == ACK_WAIT_S
            assert (metrics.num_ack_pending, metrics.num_redelivered) == (1, 0)

            async def all_stored() -> bool:
                return await stored(env) >= published.samples

            await wait_for(all_stored, within=30)
    finally:
        if not locker.is_closed():
            await locker.close()
    assert (worker.stats.redelivered, worker.stats.merges) == (0, 0)
    await assert_exactly(env, published)
    metrics, _ = await consumers(js, env)
    assert (metrics.num_ack_pending, metrics.num_redelivered) == (0, 0)
    await nc.close()
