"""Messages that used to crash or stall ingest, or to vanish: each goes to the DLQ with its
reason while the rest is stored, and no worker restarts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import pytest

from tests.helpers import running_worker, wait_for
from tests.integration.ingest_support import (
    BASE_TS,
    Unity,
    consumers,
    fetchval,
    publish_batches,
    stored,
    streams_ready,
    unity_env,
)
from tests.servers import Env, isolated_settings
from unity.ingest import dlq
from unity.schemas import MSGPACK, Event, HealthReport, MetricBatch, Sample, encode

DEEP = 1000  # msgspec's own bound is the interpreter's recursion limit


def _nested_json() -> bytes:
    """A 2 KB batch whose ignored field nests ``DEEP`` lists."""
    return (
        b'{"host":"h0","plugin":"loadgen","ts":%d,"samples":[],"x":' % BASE_TS
        + b"[" * DEEP
        + b"]" * DEEP
        + b"}"
    )


def _nested_msgpack_event() -> bytes:
    """An event whose ``data`` nests ``DEEP`` arrays, in MessagePack."""
    head = msgspec.msgpack.encode({"host": "h0", "plugin": "loadgen", "kind": "k"})
    # A fixmap of 3 entries becomes one of 4: the last is data = {"a": [[[...]]]}.
    return (
        bytes([head[0] + 1])
        + head[1:]
        + msgspec.msgpack.encode("data")
        + b"\x81"
        + msgspec.msgpack.encode("a")
        + b"\x91" * DEEP
        + b"\x90"
    )


def _event_deeper_than_the_bound() -> bytes:
    data: object = "leaf"
    for _ in range(40):
        data = {"d": data}
    return encode(Event(host="h0", plugin="loadgen", kind="inventory", data={"x": data}))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_nested_messages_among_good_ones_are_dead_lettered_and_no_worker_restarts(
    env: Env, tmp_path: Path, workers: int
) -> None:
    nc, js = await streams_ready(env)
    subjects = env.settings.subjects
    good = await publish_batches(js, env, 20, per_message=10, hosts=1)
    await js.publish(subjects.metrics("h0", "loadgen"), _nested_json())
    await js.publish(
        subjects.events("h0", "loadgen"), _nested_msgpack_event(), headers={"Content-Type": MSGPACK}
    )
    await js.publish(subjects.events("h0", "loadgen"), _event_deeper_than_the_bound())
    more = await publish_batches(js, env, 20, per_message=10, hosts=1, start=20)
    child_env = unity_env(env, tmp_path, ingest_fetch="10", ingest_report_interval_s="0")
    ingest = Unity(child_env, tmp_path / "ingest.log", "ingest", "--workers", str(workers))
    try:

        async def all_stored() -> bool:
            assert ingest.alive(), ingest.output()
            return await stored(env) >= good.samples + more.samples

        await wait_for(all_stored, within=120)

        async def three_dead() -> bool:
            return len([e async for e in dlq.entries(js, subjects)]) >= 3

        await wait_for(three_dead, within=60)
        entries = [e async for e in dlq.entries(js, subjects)]
        assert Counter(e.reason for e in entries) == {"too_deep": 3}
        assert {e.subject.split(".")[1] for e in entries} == {"metrics", "events"}
        metrics, events = await consumers(js, env)
        assert (metrics.num_ack_pending, events.num_ack_pending) == (0, 0)
    finally:
        assert ingest.terminate() == 0, ingest.output()
    assert await stored(env) == good.samples + more.samples
    # The supervisor never had a worker to restart.
    assert "exited" not in ingest.output(), ingest.output()
    await nc.close()


async def test_a_message_never_acked_is_dead_lettered_after_max_deliver(env: Env) -> None:
    settings = isolated_settings(
        env.ep, env.root, ingest_ack_wait_s=1.0, ingest_max_deliver=3, ingest_fetch=1
    )
    nc, js = await streams_ready(env)
    # PostgreSQL refuses one plugin's runs with an error that is neither transient nor about
    # the data (as a broken trigger or extension would): the batch is never acked.
    await fetchval(
        env,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.plugin = 'stuck' THEN RAISE EXCEPTION 'stuck forever'; END IF;"
        " RETURN NEW; END $$",
    )
    await fetchval(
        env,
        "CREATE TRIGGER refuse BEFORE INSERT ON plugin_runs FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    subjects = env.settings.subjects
    report = HealthReport(host="h0", plugin="stuck", status="ok", ts=BASE_TS)
    await js.publish(subjects.health("h0", "stuck"), encode(report))
    async with running_worker(settings, env.ep) as worker:

        async def dead_lettered() -> bool:
            return worker.stats.dead["max_deliveries"] == 1

        await wait_for(dead_lettered, within=60, state=lambda: worker.stats)
        later = HealthReport(host="h0", plugin="fine", status="ok", ts=BASE_TS)
        await js.publish(subjects.health("h0", "fine"), encode(later))

        async def fine_stored() -> bool:
            return await fetchval(env, "SELECT count(*) FROM plugin_runs") == 1

        await wait_for(fine_stored, within=30)
        _, events = await consumers(js, env)
    assert (events.num_ack_pending, events.num_pending) == (0, 0)
    entries = [e async for e in dlq.entries(js, subjects)]
    assert [(e.reason, e.subject) for e in entries] == [
        ("max_deliveries", subjects.health("h0", "stuck"))
    ]
    assert msgspec.json.decode(entries[0].data)["plugin"] == "stuck"
    assert "3 deliveries" in entries[0].error
    await nc.close()


async def test_a_body_that_disagrees_with_its_subject_is_dead_lettered(env: Env) -> None:
    nc, js = await streams_ready(env)
    subjects = env.settings.subjects
    root = subjects.root
    sample = [Sample("load", 1.0)]
    spoofed = MetricBatch(host="victim", plugin="cpu", ts=BASE_TS, samples=sample)
    await js.publish(subjects.metrics("attacker", "cpu"), encode(spoofed))
    other_plugin = MetricBatch(host="attacker", plugin="disk", ts=BASE_TS, samples=sample)
    await js.publish(subjects.metrics("attacker", "cpu"), encode(other_plugin))
    report = HealthReport(host="victim", plugin="cpu", status="ok", ts=BASE_TS)
    await js.publish(subjects.health("attacker", "cpu"), encode(report))
    event = Event(host="victim", plugin="cpu", kind="k", ts=BASE_TS)
    await js.publish(subjects.events("attacker", "cpu"), encode(event))
    ts_ns = int(BASE_TS) * 10**9
    lines = f"web,host=attacker requests=1i {ts_ns}\nweb,host=victim requests=2i {ts_ns}\n"
    await js.publish(f"{root}.lp.attacker", lines.encode())
    # What producers send is accepted: names are compared after the same sanitising.
    honest = MetricBatch(host="web 01", plugin="my.plugin", ts=BASE_TS, samples=sample)
    await js.publish(subjects.metrics("web 01", "my.plugin"), encode(honest))
    async with running_worker(env.settings, env.ep) as worker:

        async def all_seen() -> bool:
            return worker.stats.messages >= 6

        await wait_for(all_seen, within=30)
    assert worker.stats.dead == {"subject_mismatch": 5}
    hosts = await fetchval(env, "SELECT array_agg(DISTINCT host ORDER BY host) FROM series")
    assert hosts == ["attacker", "web_01"]
    assert await stored(env) == 2  # the attacker's own line and the honest batch
    assert await fetchval(env, "SELECT count(*) FROM plugin_runs") == 0
    assert await fetchval(env, "SELECT count(*) FROM events") == 0
    entries = [e async for e in dlq.entries(js, subjects)]
    assert {e.reason for e in entries} == {"subject_mismatch"}
    assert any("'victim'" in e.error for e in entries)
    await nc.close()
