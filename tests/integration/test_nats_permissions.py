"""Credentials per role and per collector host on the production cluster config: a host
publishes only as itself, cannot read the DLQ or delete a stream, and a host added later
logs in after a reload, with no restart."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig

from tests.cluster import NatsCluster
from unity.compose.cli import main as unity
from unity.compose.natsusers import UserStore
from unity.sdk.connection import connect_nats
from unity.sdk.settings import Endpoints

pytestmark = pytest.mark.slow


def _password(folder: Path, name: str) -> str:
    return (folder / f"nats-{name}.password").read_text().strip()


@contextlib.asynccontextmanager
async def _as(cluster: NatsCluster, folder: Path, user: str) -> AsyncIterator[NATS]:
    ep = Endpoints(
        ",".join(cluster.urls),
        user,
        _password(folder, user),
        "",
        None,
        "",
        None,
        nats_ca=cluster.ca_file,
    )
    nc = await connect_nats(ep, f"perm-{user}", allow_reconnect=False)
    try:
        yield nc
    finally:
        await nc.close()


async def _ready(cluster: NatsCluster, folder: Path) -> None:
    for _ in range(60):
        try:
            async with _as(cluster, folder, "admin") as nc:
                js = nc.jetstream()
                for stream, subjects in (
                    ("UNITY_METRICS", ["unity.metrics.>"]),
                    ("UNITY_DLQ", ["unity.dlq.>"]),
                ):
                    await js.add_stream(
                        StreamConfig(name=stream, subjects=subjects, num_replicas=3)
                    )
                return
        except Exception:  # the cluster is still electing its meta leader
            await asyncio.sleep(0.5)
    pytest.fail(f"no cluster:\n{cluster.logs()}")


async def test_a_host_publishes_only_as_itself(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    assert await asyncio.to_thread(unity, ["nats", "--dir", str(folder), "users"]) == 0
    assert await asyncio.to_thread(unity, ["nats", "--dir", str(folder), "add-host", "nas"]) == 0
    store = UserStore(folder)
    assert (folder / "nats-nas.password").stat().st_mode & 0o777 == 0o600
    assert "nats-nas" not in store.conf_path.read_text()  # hashes only, no password
    assert _password(folder, "nas") not in store.conf_path.read_text()
    cluster = NatsCluster(tmp_path / "cluster", store.conf_path.read_text())
    cluster.start_all()
    try:
        await _ready(cluster, folder)
        async with _as(cluster, folder, "nas") as nc:
            js = nc.jetstream()
            ack = await js.publish("unity.metrics.nas.cpu", b"{}", timeout=5)
            assert ack.stream == "UNITY_METRICS"
            # As another host: the server refuses the publish, so no PubAck ever comes.
            with pytest.raises(Exception):  # noqa: B017, PT011 - a timeout or no-responders
                await js.publish("unity.metrics.pi.cpu", b"{}", timeout=2)
            # The DLQ: neither a plain subscription nor a consumer.
            with pytest.raises(Exception):  # noqa: B017, PT011
                await js.pull_subscribe("unity.dlq.>", durable="peek", stream="UNITY_DLQ")
            # A stream's definition: no deletion.
            with pytest.raises(Exception):  # noqa: B017, PT011
                await js.delete_stream("UNITY_METRICS")
        async with _as(cluster, folder, "ingest") as nc:
            with pytest.raises(Exception):  # noqa: B017, PT011 - not even a role may delete
                await nc.jetstream().delete_stream("UNITY_METRICS")
        async with _as(cluster, folder, "admin") as nc:
            info = await nc.jetstream().stream_info("UNITY_METRICS")
            assert info.state.messages == 1  # nas's one message; pi's never landed

        # A host added while the cluster runs: a reload, not a restart.
        assert await asyncio.to_thread(unity, ["nats", "--dir", str(folder), "add-host", "pi"]) == 0
        cluster_users = cluster.folder / "users.conf"
        cluster_users.write_text(store.conf_path.read_text())
        pids = [p.pid for p in cluster.procs if p is not None]
        for proc in cluster.procs:
            assert proc is not None
            proc.send_signal(signal.SIGHUP)
        for _ in range(40):
            try:
                async with _as(cluster, folder, "pi") as nc:
                    await nc.jetstream().publish("unity.metrics.pi.cpu", b"{}", timeout=5)
                break
            except Exception:
                await asyncio.sleep(0.25)
        else:
            pytest.fail(f"pi never logged in after the reload:\n{cluster.logs()}")
        assert [p.pid for p in cluster.procs if p is not None] == pids
    finally:
        cluster.stop_all()
