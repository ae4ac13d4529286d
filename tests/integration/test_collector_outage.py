"""NATS goes away for 20 s under a collector running at 1 s: nothing produced meanwhile is lost.

A private nats-server (the session one is shared by other tests) is stopped and started again
on the same port and store. The collector buffers, spills to its disk spool, and flushes in
order once NATS is back; with a restart during the outage the spool carries the batches across.
Ingest then stores them in the session PostgreSQL: every batch once, with its original time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import pytest

from tests.helpers import on_nats, private_nats, wait_for
from tests.servers import Env
from unity.collectors.runtime.config import parse_config
from unity.collectors.runtime.runner import Collector, Timing
from unity.ingest.service import Ingest
from unity.ingest.streams import ensure_consumers, ensure_streams
from unity.schemas import MetricBatch
from unity.sdk.connection import connect_nats
from unity.sdk.discovery import discover
from unity.sdk.settings import Endpoints

OUTAGE_S = 20.0
pytestmark = pytest.mark.slow


def collector(env: Env, ep: Endpoints, spool: Path) -> Collector:
    raw = {
        "agent": {
            "host": "testhost",
            "interval": 1,
            "spool_dir": str(spool),
            "self_metrics": False,
            "watch_config": False,
            "ack_timeout": 1,
        },
        "plugins": {"memory": {"interval": 1}},
    }
    return Collector(env.settings, ep, config=parse_config(raw, discover(), "testhost"))


async def run_for(c: Collector, seconds: float) -> list[Timing]:
    task = asyncio.create_task(c.run())
    await asyncio.sleep(seconds)
    await c.stop(flush_timeout=1)
    await task
    return [t for t in c.timings if t.key == "memory" and t.status == "ok"]


@pytest.mark.parametrize("restart", [False, True], ids=["one-collector", "restart-in-outage"])
async def test_every_batch_of_an_outage_arrives_in_order_once(
    env: Env, tmp_path: Path, restart: bool
) -> None:
    with private_nats("unity-outage-") as server:
        ep = on_nats(env.ep, server)
        nc = await connect_nats(ep, "test-setup")
        await ensure_streams(nc.jetstream(), env.settings)
        await ensure_consumers(nc.jetstream(), env.settings)
        await nc.close()

        spool = tmp_path / "spool"
        first = collector(env, ep, spool)
        await first.start()
        task = asyncio.create_task(first.run())
        await asyncio.sleep(3.0)
        assert first.sender.stats.published >= 2, "published while NATS was up"

        server.stop()
        down = time.time()
        if restart:
            await asyncio.sleep(OUTAGE_S / 2)
            await first.stop(flush_timeout=1)
            await task
            runs = [t for t in first.timings if t.key == "memory" and t.status == "ok"]
            assert len(first.outbox) == 0 or first.outbox.on_disk
            assert len(list(spool.glob("*.msg"))) >= OUTAGE_S / 2 - 2, "spooled to disk"
            second = collector(env, ep, spool)
            await second.start()  # NATS is still down: connects in the background
            task = asyncio.create_task(second.run())
            await asyncio.sleep(OUTAGE_S / 2)
            current = second
        else:
            await asyncio.sleep(OUTAGE_S)
            runs = []
            current = first
        server.start()
        up = time.time()

        async def drained() -> bool:
            return len(current.outbox) == 0 and current.sender.stats.published > 0

        await wait_for(drained, 60, "outbox flushed after NATS came back")
        await asyncio.sleep(1.5)  # one more run after the flush
        await current.stop(flush_timeout=5)
        await task
        runs += [t for t in current.timings if t.key == "memory" and t.status == "ok"]

        expected = [int(t.started * 1000) for t in runs]
        during = [t for t in runs if down < t.started < up]
        assert len(during) >= OUTAGE_S - 3, "the collector kept collecting during the outage"
        assert current.outbox.dropped == 0

        # The stream holds each batch once, in production order, with its original seq and ts.
        nc = await connect_nats(ep, "test-check")
        js = nc.jetstream()
        subject = env.settings.subjects.metrics("testhost", "memory")
        sub = await js.subscribe(subject, ordered_consumer=True)
        seqs: list[int] = []
        with contextlib.suppress(TimeoutError):
            while len(seqs) < len(expected) + 5:
                msg = await sub.next_msg(timeout=2)
                batch = msgspec.json.decode(msg.data, type=MetricBatch)
                assert isinstance(batch.ts, datetime)
                assert int(batch.ts.timestamp() * 1000) == batch.seq  # ts is the run's start
                seqs.append(batch.seq)
        await sub.unsubscribe()
        await nc.close()
        assert seqs == expected

        # Ingest stores every batch exactly once, at its original time.
        worker = Ingest(env.settings, ep, report_interval=0)
        await worker.start()
        ingest = asyncio.create_task(worker.run())
        conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
        try:
            sql = (
                "SELECT s.time FROM samples s JOIN series r ON r.id = s.series_id "
                "WHERE r.plugin = 'memory' AND r.name = 'memory_total_bytes' ORDER BY s.time"
            )

            async def stored() -> bool:
                return len(await conn.fetch(sql)) >= len(expected)

            await wait_for(stored, 60, "ingest stored the batches")
            await asyncio.sleep(1.0)  # a duplicate would land now
            times = [row["time"] for row in await conn.fetch(sql)]
        finally:
            await conn.close()
            await worker.stop()
            await ingest
            await worker.close()
        assert [int(t.timestamp() * 1000) for t in times] == expected
        assert all(t.tzinfo is not None for t in times)
        assert times[0] <= datetime.fromtimestamp(down, UTC) <= times[-1]
