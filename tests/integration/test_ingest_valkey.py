"""Latest values in Valkey: an outage loses no rows and the cache catches up when Valkey
returns; the newest value wins whatever order batches commit in.

The outage test stops a private valkey-server (not the session one), disturbing no other test.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from tests.api.conftest import running_api
from tests.helpers import running_ingest, wait_for
from tests.integration.ingest_support import BASE_TS, publish_batches, stored
from tests.servers import Env
from unity.compose.embedded import ValkeyServer, free_port
from unity.ingest.cache import read_latest, write_latest
from unity.schemas.storage import CachedValue
from unity.sdk.connection import connect_nats, valkey_client


@pytest.mark.slow
async def test_valkey_outage_loses_no_rows_and_the_cache_catches_up(
    env: Env, tmp_path: Path
) -> None:
    server = ValkeyServer(tmp_path, free_port(), uuid.uuid4().hex)
    server.start()
    ep = replace(
        env.ep, valkey_url=f"valkey://127.0.0.1:{server.port}/0", valkey_password=server.password
    )
    nc = await connect_nats(ep, "test")
    js = nc.jetstream()
    client = valkey_client(ep)
    try:
        async with running_ingest(env, ep, report_interval=0.3) as worker:
            first = await publish_batches(js, env, 5, per_message=10, hosts=1)

            async def cached(value: float) -> bool:
                try:
                    items = await read_latest(client, env.root, "h0", "loadgen")
                except OSError:
                    return False
                return len(items) == 10 and all(i.value >= value for i in items)

            await wait_for(
                lambda: cached(4000.0), state=lambda: (worker.stats, worker.cache.failures)
            )

            server.stop()
            # Later batches of the same series (newer timestamps, larger values).
            second = await publish_batches(js, env, 20, per_message=10, hosts=1, start=5)

            async def all_rows() -> bool:
                return await stored(env, "loadgen") == first.samples + second.samples

            await wait_for(all_rows, state=lambda: (worker.stats, worker.cache.failures))
            assert worker.cache.failures >= 1
            assert worker.cache.waiting >= 10
            assert worker.stats.messages >= 25

            server.start()
            # The newest value of every series (message 24: 24000 + slot) reaches Valkey.
            await wait_for(
                lambda: cached(24000.0),
                within=90,
                every=0.2,
                state=lambda: (worker.cache.failures, worker.cache.waiting),
            )
            assert worker.cache.waiting == 0
            items = await read_latest(client, env.root, "h0", "loadgen")
            assert sorted(i.value for i in items) == [24000.0 + i for i in range(10)]
    finally:
        await client.aclose()
        await nc.close()
        server.stop()


async def test_an_older_value_never_replaces_a_newer_one(env: Env) -> None:
    # Two pullers or two workers commit in any order: the cache keeps the newest by time.
    client = valkey_client(env.ep)
    try:
        at = datetime.fromtimestamp(BASE_TS, UTC)
        newer = CachedValue("h", "p", "", "temp", {"room": "a"}, "celsius", "gauge", 21.0, at)
        older = msgspec.structs.replace(newer, value=19.0, ts=at.replace(second=0, minute=0))
        assert await write_latest(client, env.root, [newer]) == 1
        assert await write_latest(client, env.root, [older]) == 0
        assert [v.value for v in await read_latest(client, env.root, "h", "p")] == [21.0]
        later = msgspec.structs.replace(newer, value=23.0, ts=at.replace(year=at.year + 1))
        assert await write_latest(client, env.root, [older, later]) == 1
        assert [v.value for v in await read_latest(client, env.root, "h", "p")] == [23.0]
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_a_valkey_restarted_with_older_data_is_not_served_until_refreshed(
    env: Env, tmp_path: Path
) -> None:
    server = ValkeyServer(tmp_path, free_port(), uuid.uuid4().hex)
    server.start()
    url = f"valkey://127.0.0.1:{server.port}/0"
    ep = replace(env.ep, valkey_url=url, valkey_password=server.password)
    private = Env(msgspec.structs.replace(env.settings, valkey_url=url), ep, env.root)
    nc = await connect_nats(ep, "test")
    js = nc.jetstream()
    client = valkey_client(ep)
    try:
        async with running_ingest(env, ep) as worker:
            first = await publish_batches(js, env, 5, per_message=10, hosts=1)

            async def first_cached() -> bool:
                items = await read_latest(client, env.root, "h0", "loadgen")
                return len(items) == 10 and all(i.value >= 4000.0 for i in items)

            await wait_for(first_cached)
            # Valkey goes down keeping these values on disk; newer ones reach PostgreSQL only.
            server.stop()
            second = await publish_batches(js, env, 5, per_message=10, hosts=1, start=5)

            async def all_rows() -> bool:
                return await stored(env, "loadgen") == first.samples + second.samples

            await wait_for(all_rows, state=lambda: worker.stats)
        server.start()
        newest = sorted(9000.0 + slot for slot in range(10))
        async with running_api(private) as api:
            # Valkey is back with the older values: they are not served as current.
            body = (await api.get("/latest", params={"selector": '{plugin="loadgen"}'})).json()
            assert (body["source"], sorted(i["value"] for i in body["items"])) == (
                "postgres",
                newest,
            )
            # Ingest starts, reloads Valkey from PostgreSQL; Valkey answers again.
            async with running_ingest(env, ep) as worker:

                async def served_from_valkey() -> bool:
                    got = await api.get("/latest", params={"selector": '{plugin="loadgen"}'})
                    return bool(got.json()["source"] == "valkey")

                await wait_for(served_from_valkey, within=30)
                assert worker.cache.refreshes == 1
            body = (await api.get("/latest", params={"selector": '{plugin="loadgen"}'})).json()
            assert sorted(i["value"] for i in body["items"]) == newest
    finally:
        await client.aclose()
        await nc.close()
        server.stop()
