"""Two values for one series and time: the first committed wins in PostgreSQL and in Valkey,
the other message goes to the DLQ as ``conflict``; the same value again is a quiet duplicate."""

from __future__ import annotations

import asyncpg
import msgspec

from tests.helpers import running_worker, wait_for
from tests.integration.ingest_support import BASE_TS, stored, streams_ready
from tests.servers import Env, isolated_settings
from unity.ingest import dlq
from unity.ingest.cache import read_latest
from unity.schemas import MetricBatch, Sample, encode
from unity.sdk.connection import valkey_client

SLOTS = 3


def _batch(value: float, i: int) -> bytes:
    samples = [Sample("v", value, {"slot": str(s)}) for s in range(SLOTS)]
    return encode(MetricBatch(host="h0", plugin="pairs", ts=BASE_TS + i, samples=samples))


async def _stored_values(env: Env) -> dict[tuple[float, str], float]:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM v.time)::float8 AS t, s.labels->>'slot' AS slot, v.value"
            " FROM samples v JOIN series s ON s.id = v.series_id WHERE s.plugin = 'pairs'"
        )
    finally:
        await conn.close()
    return {(r["t"], r["slot"]): r["value"] for r in rows}


async def _valkey_equals_postgres(env: Env, at: int) -> None:
    client = valkey_client(env.ep)
    try:
        cached = await read_latest(client, env.root, "h0", "pairs")
    finally:
        await client.aclose()
    held = await _stored_values(env)
    assert {(i.ts.timestamp(), i.labels["slot"]) for i in cached} == {
        (BASE_TS + at, str(s)) for s in range(SLOTS)
    }
    assert all(held[(i.ts.timestamp(), i.labels["slot"])] == i.value for i in cached), cached


async def test_the_first_value_wins_and_the_other_message_is_dead_lettered(env: Env) -> None:
    # One puller: batches commit in stream order, so "first committed" is "first published".
    settings = isolated_settings(env.ep, env.root, ingest_pullers=1)
    nc, js = await streams_ready(env)
    subjects = env.settings.subjects
    subject = subjects.metrics("h0", "pairs")
    # Ten pairs in one fetch, then the first value of each again under a new Msg-Id.
    for i in range(10):
        await js.publish(subject, _batch(1000 + i, i), headers={"Nats-Msg-Id": f"a{i}"})
        await js.publish(subject, _batch(2000 + i, i), headers={"Nats-Msg-Id": f"b{i}"})
    for i in range(10):
        await js.publish(subject, _batch(1000 + i, i), headers={"Nats-Msg-Id": f"c{i}"})
    async with running_worker(settings, env.ep) as worker:

        async def first_part() -> bool:
            return worker.stats.messages >= 30

        await wait_for(first_part, within=30)
        await wait_for(lambda: _cached(env, 9), within=30)
        await _valkey_equals_postgres(env, 9)
        # Five more pairs, the second value in a later batch than the stored first one.
        for i in range(10, 15):
            await js.publish(subject, _batch(1000 + i, i), headers={"Nats-Msg-Id": f"a{i}"})

            async def winner_stored(i: int = i) -> bool:
                return await stored(env, "pairs") == (i + 1) * SLOTS

            await wait_for(winner_stored, within=30)
            await js.publish(subject, _batch(2000 + i, i), headers={"Nats-Msg-Id": f"b{i}"})

        async def all_seen() -> bool:
            return worker.stats.messages >= 40

        await wait_for(all_seen, within=30)
        await wait_for(lambda: _cached(env, 14), within=30)
        await _valkey_equals_postgres(env, 14)
    held = await _stored_values(env)
    assert held == {(BASE_TS + i, str(s)): 1000.0 + i for i in range(15) for s in range(SLOTS)}
    # Every second value is counted, and its message is dead-lettered once.
    assert worker.stats.conflicts == 15 * SLOTS
    assert worker.stats.dead == {"conflict": 15}
    entries = [e async for e in dlq.entries(js, subjects, "conflict")]
    values = sorted(msgspec.json.decode(e.data)["samples"][0]["value"] for e in entries)
    assert values == [2000.0 + i for i in range(15)]
    assert all("stored 10" in e.error for e in entries), [e.error for e in entries]
    await nc.close()


async def _cached(env: Env, at: int) -> bool:
    client = valkey_client(env.ep)
    try:
        cached = await read_latest(client, env.root, "h0", "pairs")
    finally:
        await client.aclose()
    return len(cached) == SLOTS and all(i.ts.timestamp() == BASE_TS + at for i in cached)
