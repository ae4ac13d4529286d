"""Unity on a three-node JetStream cluster (compose/production/nats.conf, TLS, R3 streams):
SIGKILL the metrics stream's leader, bring it back, then SIGKILL the node ingest reads from.
Every batch published with a PubAck is stored exactly once, and nothing of ours restarts.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext

from tests.cluster import NatsCluster
from tests.helpers import running_worker, wait_for
from tests.integration.ingest_support import child_env, streams_ready
from tests.servers import Env, isolated_settings
from unity.schemas import MetricBatch, Sample, encode
from unity.sdk.settings import Endpoints

pytestmark = pytest.mark.slow

PER_BATCH = 20
USERS = 'users: [\n  {user: admin, password: "cluster-admin"}\n]\n'


@dataclass
class Load:
    """A steady publisher: one batch every ``every`` seconds, each retried under its Msg-Id
    until a PubAck says it is stored."""

    js: JetStreamContext
    root: str
    every: float = 0.02
    acked: list[int] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    retries: int = 0
    stop: bool = False

    async def run(self) -> None:
        base = float(int(time.time()) - 600)
        m = 0
        while not self.stop:
            batch = MetricBatch(
                host="c1",
                plugin="clusterload",
                ts=base + m * 0.01,
                seq=m,
                samples=[
                    Sample("v", float(m * 100 + i), {"i": str(i)}, "") for i in range(PER_BATCH)
                ],
            )
            data = encode(batch)
            while True:
                try:
                    await self.js.publish(
                        f"{self.root}.metrics.c1.clusterload",
                        data,
                        timeout=2,
                        headers={"Nats-Msg-Id": f"c1:clusterload::{m}"},
                    )
                    break
                except Exception:  # timeouts, no responders, reconnecting: retry the same id
                    self.retries += 1
                    await asyncio.sleep(0.1)
            self.acked.append(m)
            self.ack_times.append(time.monotonic())
            m += 1
            await asyncio.sleep(self.every)

    def longest_gap_after(self, t: float) -> float:
        """The longest time between two PubAcks from ``t`` on (a publish stall)."""
        times = [x for x in self.ack_times if x >= t - 1]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@dataclass
class Progress:
    """Rows of the load's series in PostgreSQL over time: the longest wait for a new row after
    a moment is how long ingest stalled."""

    url: str
    password: str | None
    seen: list[tuple[float, int]] = field(default_factory=list)
    stop: bool = False

    async def run(self) -> None:
        conn = await asyncpg.connect(self.url, password=self.password)
        try:
            while not self.stop:
                n = await conn.fetchval(
                    "SELECT count(*) FROM samples WHERE series_id IN"
                    " (SELECT id FROM series WHERE plugin = 'clusterload')"
                )
                if not self.seen or n != self.seen[-1][1]:
                    self.seen.append((time.monotonic(), n))
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    def longest_gap_after(self, t: float) -> float:
        times = [x for x, _ in self.seen if x >= t - 1]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def _row(ep: Endpoints, sql: str, *args: object) -> asyncpg.Record:
    conn = await asyncpg.connect(ep.database_url, password=ep.database_password)
    try:
        row = await conn.fetchrow(sql, *args)
    finally:
        await conn.close()
    assert row is not None
    return row


async def _stored(ep: Endpoints) -> tuple[int, int, float]:
    row = await _row(
        ep,
        "SELECT count(*), count(DISTINCT (series_id, time)), coalesce(sum(value), 0)"
        " FROM samples WHERE series_id IN (SELECT id FROM series WHERE plugin = 'clusterload')",
    )
    return int(row[0]), int(row[1]), float(row[2])


def _on_cluster(env: Env, cluster: NatsCluster) -> Endpoints:
    """The test's servers with NATS swapped for the cluster (all three URLs, TLS, admin)."""
    return replace(
        env.ep,
        nats_url=",".join(cluster.urls),
        nats_user="admin",
        nats_password="cluster-admin",
        nats_ca=cluster.ca_file,
    )


async def _formed(env: Env, cluster: NatsCluster) -> tuple[NATS, JetStreamContext]:
    """Streams and consumers in place, once the meta group has a leader (R3 needs all three)."""
    for _ in range(60):
        try:
            return await streams_ready(env)
        except Exception:  # not formed yet; the logs say why if it never is
            await asyncio.sleep(0.5)
    pytest.fail(f"no cluster formed:\n{cluster.logs()}")


async def test_losing_nodes_loses_and_doubles_nothing(env: Env, tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path, USERS)
    cluster.start_all()
    try:
        ep = _on_cluster(env, cluster)
        settings = isolated_settings(
            ep, env.root, stream_replicas=3, ingest_fetch=50, ingest_ack_wait_s=5.0
        )
        private = Env(settings, ep, env.root)
        nc, js = await _formed(private, cluster)
        info = await js.stream_info(settings.subjects.metrics_stream)
        assert info.config.num_replicas == 3
        load = Load(js, env.root)
        publisher = asyncio.create_task(load.run())
        progress = Progress(ep.database_url, ep.database_password)
        sampler = asyncio.create_task(progress.run())
        # A real collector on all three URLs beside the steady publisher.
        config = tmp_path / "collector.toml"
        config.write_text('[agent]\nhost = "cc1"\n\n[[plugins.memory]]\ninterval = "0.5s"\n')
        child = child_env(ep, env.root, tmp_path / "collector-data", nats_ca=cluster.ca_file)
        collector = _start_collector(config, child, tmp_path / "collector.log")
        async with running_worker(settings, ep) as w1, running_worker(settings, ep) as w2:
            await _more(load, 100)
            # 1. The metrics stream's leader dies, and comes back 5 s later.
            leader = (await js.stream_info(settings.subjects.metrics_stream)).cluster
            assert leader is not None and leader.leader is not None
            victim = cluster.index(leader.leader)
            killed_at = time.monotonic()
            cluster.kill(victim)
            await asyncio.sleep(5)
            cluster.start(victim)
            await _more(load, 100)
            leader_stall = load.longest_gap_after(killed_at)
            leader_ingest_stall = progress.longest_gap_after(killed_at)
            # 2. The node a worker reads from dies, and comes back 5 s later.
            url = w1._nc.connected_url if w1._nc is not None else None
            assert url is not None and url.port is not None
            reading = cluster.client_ports.index(url.port)
            killed_at = time.monotonic()
            cluster.kill(reading)
            await asyncio.sleep(5)
            cluster.start(reading)
            await _more(load, 100)
            reader_stall = load.longest_gap_after(killed_at)
            reader_ingest_stall = progress.longest_gap_after(killed_at)
            second_kill = time.time() - (time.monotonic() - killed_at)
            load.stop = True
            await publisher
            expected = len(load.acked) * PER_BATCH

            async def all_stored() -> bool:
                count, _, _ = await _stored(ep)
                return count >= expected

            started = time.monotonic()
            await wait_for(all_stored, within=120)
            drain = time.monotonic() - started
            progress.stop = True
            await sampler

            async def collector_after_second_kill() -> bool:
                newest = await _newest(ep, "cc1")
                return newest is not None and newest > second_kill

            # The collector rode over both losses by itself: it stored data after the second.
            await wait_for(collector_after_second_kill, within=60)
            collector.terminate()
            code = await asyncio.to_thread(collector.wait, 30)
            assert code == 0, (tmp_path / "collector.log").read_text()[-3000:]
            assert w1.stats.dead_lettered == w2.stats.dead_lettered == 0
        count, distinct, total = await _stored(ep)
        value_sum = sum(float(m * 100 + i) for m in load.acked for i in range(PER_BATCH))
        assert (count, distinct, total) == (expected, expected, value_sum)
        rows, unique = await _collector_rows(ep, "cc1")
        assert rows > 0 and rows == unique, "the collector's data was stored twice"
        print(
            f"\ncluster: {len(load.acked)} batches acked, {load.retries} publish retries; "
            f"publish stall after the leader's loss {leader_stall:.1f}s, after the reader "
            f"node's loss {reader_stall:.1f}s; ingest stalled {leader_ingest_stall:.1f}s and "
            f"{reader_ingest_stall:.1f}s; caught up {drain:.1f}s after the load; collector: "
            f"{rows} samples, none twice"
        )
        await nc.close()
    finally:
        cluster.stop_all()


def _start_collector(config: Path, child: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        argv = [sys.executable, "-m", "unity.compose", "collector", "--config", str(config)]
        return subprocess.Popen(argv, env=child, stdout=out, stderr=out)


async def _newest(ep: Endpoints, host: str) -> float | None:
    row = await _row(
        ep,
        "SELECT extract(epoch FROM max(time)) FROM samples WHERE series_id IN"
        " (SELECT id FROM series WHERE host = $1)",
        host,
    )
    return None if row[0] is None else float(row[0])


async def _collector_rows(ep: Endpoints, host: str) -> tuple[int, int]:
    row = await _row(
        ep,
        "SELECT count(*), count(DISTINCT (series_id, time)) FROM samples WHERE series_id IN"
        " (SELECT id FROM series WHERE host = $1)",
        host,
    )
    return int(row[0]), int(row[1])


async def _more(load: Load, n: int) -> None:
    """Wait until ``n`` more batches than now are acknowledged."""
    target = len(load.acked) + n

    async def acked() -> bool:
        return len(load.acked) >= target

    await wait_for(acked, within=90)


async def test_a_start_never_lowers_what_an_operator_raised(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = NatsCluster(tmp_path, USERS)
    cluster.start_all()
    try:
        ep = _on_cluster(env, cluster)
        r3 = Env(isolated_settings(ep, env.root, stream_replicas=3), ep, env.root)
        nc, js = await _formed(r3, cluster)
        name = r3.settings.subjects.metrics_stream
        # The operator also lifts the age limit by hand (0: none).
        info = await js.stream_info(name)
        info.config.max_age = 0
        await js.update_stream(info.config)
        # A default start (1 replica, the default age) keeps both, and says so.
        default = Env(isolated_settings(ep, env.root), ep, env.root)
        assert default.settings.stream_replicas == 1
        caplog.set_level(logging.WARNING, logger="unity.ingest.streams")
        nc2, _ = await streams_ready(default)
        info = await js.stream_info(name)
        assert info.config.num_replicas == 3
        assert info.config.max_age == 0
        said = [r.getMessage() for r in caplog.records]
        assert any(f"stream {name} has num_replicas 3" in m for m in said), said
        await nc2.close()
        await nc.close()
    finally:
        cluster.stop_all()
