"""Bad input goes to the DLQ with its reason, good input is stored, ingest keeps running;
line protocol from Telegraf; the registry learns plugins from what they publish."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec

from tests.helpers import running_ingest, wait_for
from tests.integration.ingest_support import (
    BASE_TS,
    Unity,
    fetchval,
    stored,
    streams_ready,
    unity_env,
)
from tests.servers import Env
from unity.ingest import dlq
from unity.schemas import MSGPACK, Event, HealthReport, MetricBatch, Sample, encode

TELEGRAF = Path(__file__).parents[1] / "unit" / "testdata" / "lineprotocol" / "telegraf-1.32.lp"


def _batch(i: int, *, bad: bool = False) -> MetricBatch:
    samples = [Sample("flood_value", float(i), {"n": str(j)}) for j in range(5)]
    if bad:
        samples.append(Sample("bad name!", 1.0))
    return MetricBatch(host="flood", plugin="mixed", ts=BASE_TS + i, seq=i, samples=samples)


async def test_flood_of_malformed_and_valid_messages(env: Env, tmp_path: Path) -> None:
    nc, js = await streams_ready(env)
    subjects = env.settings.subjects
    subject = subjects.metrics("flood", "mixed")
    expected_samples = 0
    expected_dead: Counter[str] = Counter()
    originals: dict[str, bytes] = {}
    for i in range(300):
        kind = i % 6
        if kind == 0:
            await js.publish(subject, encode(_batch(i)))
            expected_samples += 5
        elif kind == 1:
            data = b"\x00garbage{" + str(i).encode()
            await js.publish(subject, data)
            expected_dead["malformed"] += 1
            originals.setdefault("malformed", data)
        elif kind == 2:
            await js.publish(subject, msgspec.json.encode({"host": i, "plugin": "x"}))
            expected_dead["invalid"] += 1
        elif kind == 3:
            # Five good samples are kept; the bad one sends the whole message to the DLQ.
            data = encode(_batch(i, bad=True))
            await js.publish(subject, data)
            expected_samples += 5
            expected_dead["bad_name"] += 1
            originals.setdefault("bad_name", data)
        elif kind == 4:
            await js.publish(subject, encode(_batch(i), MSGPACK), headers={"Content-Type": MSGPACK})
            expected_samples += 5
        else:
            ts_ns = (int(BASE_TS) + i) * 10**9
            lines = f"web,host=flood requests={i}i {ts_ns}\nweb,host=flood requests= {ts_ns}\n"
            await js.publish(f"{subjects.root}.lp.flood", lines.encode())
            expected_samples += 1
            expected_dead["bad_line_protocol"] += 1
    # Health reports with an unknown status are refused too; alerts are not ingest's.
    await js.publish(
        subjects.health("flood", "mixed"),
        msgspec.json.encode({"host": "flood", "plugin": "mixed", "status": "fine"}),
    )
    expected_dead["invalid"] += 1
    await js.publish(f"{subjects.root}.alerts.disk_full", b'{"state": "firing"}')

    async with running_ingest(env) as worker:

        async def done() -> bool:
            return worker.stats.messages >= 301

        await wait_for(done)
        assert await stored(env) == expected_samples
        assert worker.stats.dead == expected_dead

        entries = [e async for e in dlq.entries(js, subjects, limit=1000)]
        assert Counter(e.reason for e in entries) == expected_dead
        assert all(e.subject.startswith(f"{subjects.root}.") and e.error for e in entries)
        malformed = next(e for e in entries if e.reason == "malformed")
        assert malformed.data == originals["malformed"]
        only_bad_name = [e async for e in dlq.entries(js, subjects, "bad_name", limit=1000)]
        assert len(only_bad_name) == expected_dead["bad_name"]

        # Ingest is still running: a re-driven partly bad batch is processed again, stores
        # nothing twice, and its bad sample is refused again.
        first = only_bad_name[0]
        assert first.data == originals["bad_name"]
        assert await dlq.redrive(js, subjects, first.seq) == subject
        await wait_for(lambda: _dead_count(worker, expected_dead.total() + 1))
        assert await stored(env) == expected_samples
        again = [e async for e in dlq.entries(js, subjects, "bad_name", limit=1000)]
        assert len(again) == len(only_bad_name)
        assert first.seq not in {e.seq for e in again}

    # The CLI lists and shows the same entries.
    cli_env = unity_env(env, tmp_path)
    listing = Unity(cli_env, tmp_path / "list.log", "dlq", "list", "--reason", "malformed")
    assert listing.proc.wait(60) == 0, listing.output()
    assert listing.output().count("\tmalformed\t") == expected_dead["malformed"]
    show = Unity(cli_env, tmp_path / "show.log", "dlq", "show", str(malformed.seq))
    assert show.proc.wait(60) == 0, show.output()
    assert "Unity-Reason: malformed" in show.output()
    assert f"Unity-Subject: {subject}" in show.output()
    await nc.close()


async def _dead_count(worker: object, n: int) -> bool:
    from unity.ingest.service import Ingest

    assert isinstance(worker, Ingest)
    return worker.stats.dead_lettered >= n


async def test_telegraf_line_protocol_is_stored_as_series(env: Env) -> None:
    nc, js = await streams_ready(env)
    # Telegraf stamps its flush; shift the fixture's time to an hour ago.
    ts_ns = int(BASE_TS) * 10**9
    text = TELEGRAF.read_text().replace("1732363200000000000", str(ts_ns))
    # Telegraf's NATS output publishes one message per metric (one line each).
    for line in text.splitlines():
        await js.publish(f"{env.root}.lp.web01", line.encode())
    async with running_ingest(env) as worker:
        await wait_for(lambda: _messages(worker, len(text.splitlines())))
        assert worker.stats.dead_lettered == 0
        assert worker.stats.strings_skipped == 1
    # The durable consumer was created with ingest's settings, line protocol included.
    info = await js.consumer_info(env.settings.subjects.metrics_stream, "ingest")
    assert info.config.filter_subjects == [f"{env.root}.metrics.>", f"{env.root}.lp.>"]
    assert info.config.max_ack_pending == env.settings.ingest_max_ack_pending
    assert info.config.ack_wait == env.settings.ingest_ack_wait_s
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        rows = await conn.fetch(
            "SELECT s.name, s.labels::text AS labels, v.value, v.time FROM samples v"
            " JOIN series s ON s.id = v.series_id WHERE s.host = 'web01' AND s.plugin = 'telegraf'"
        )
        registry = await conn.fetchrow(
            "SELECT source, last_seen FROM plugins WHERE host = 'web01' AND plugin = 'telegraf'"
        )
    finally:
        await conn.close()
    assert len(rows) == 59
    by_name = {(r["name"], r["labels"]): r for r in rows}
    eth0 = by_name[("net_bytes_recv", '{"interface": "eth0"}')]
    assert eth0["value"] == 184465338812.0
    assert eth0["time"] == datetime.fromtimestamp(BASE_TS, UTC)
    assert registry is not None and registry["source"] == "discovered"
    # Line protocol has no batch time: last seen is when JetStream stored the message.
    assert registry["last_seen"] > datetime.fromtimestamp(BASE_TS, UTC)
    await nc.close()


async def _messages(worker: object, n: int) -> bool:
    from unity.ingest.service import Ingest

    assert isinstance(worker, Ingest)
    return worker.stats.messages >= n


async def test_registry_learns_plugins_from_batches_and_health(env: Env) -> None:
    nc, js = await streams_ready(env)
    subjects = env.settings.subjects
    t1, t2 = BASE_TS, BASE_TS + 60
    batch = MetricBatch(
        host="nas", plugin="ups", instance="rack", ts=t2, samples=[Sample("x", 1.0)]
    )
    await js.publish(subjects.metrics("nas", "ups"), encode(batch))
    newer = HealthReport(
        host="nas", plugin="ups", instance="rack", status="degraded", ts=t2, message="on battery"
    )
    older = HealthReport(host="nas", plugin="ups", instance="rack", status="ok", ts=t1)
    await js.publish(subjects.health("nas", "ups"), encode(newer))
    event = Event(host="nas", plugin="backup", kind="finished", ts=t1, data={"files": 3})
    await js.publish(subjects.events("nas", "backup"), encode(event))
    async with running_ingest(env) as worker:
        await wait_for(lambda: _messages(worker, 3))
        # An older report arriving late (a replay, a slow producer) does not turn health back.
        await js.publish(subjects.health("nas", "ups"), encode(older))
        await wait_for(lambda: _messages(worker, 4))
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        rows = {
            (r["plugin"], r["instance"]): r
            for r in await conn.fetch(
                "SELECT plugin, instance, source, health, health_message, health_at, last_seen"
                " FROM plugins WHERE host = 'nas'"
            )
        }
    finally:
        await conn.close()
    ups = rows[("ups", "rack")]
    assert ups["source"] == "discovered"
    assert (ups["health"], ups["health_message"]) == ("degraded", "on battery")
    assert ups["health_at"] == ups["last_seen"] == datetime.fromtimestamp(t2, UTC)
    backup = rows[("backup", "")]
    assert backup["health"] is None and backup["last_seen"] == datetime.fromtimestamp(t1, UTC)
    assert await fetchval(env, "SELECT count(*) FROM plugin_runs WHERE plugin = 'ups'") == 2
    await nc.close()


async def test_a_message_postgres_refuses_is_isolated_and_dead_lettered(env: Env) -> None:
    nc, js = await streams_ready(env)
    subject = env.settings.subjects.metrics("flood", "mixed")
    # jsonb cannot hold U+0000: the series insert fails for this batch alone.
    poison = MetricBatch(
        host="flood", plugin="mixed", ts=BASE_TS, samples=[Sample("temp", 1.0, {"room": "a\x00b"})]
    )
    await js.publish(subject, encode(_batch(1)))
    await js.publish(subject, encode(poison))
    await js.publish(subject, encode(_batch(2)))
    async with running_ingest(env) as worker:
        await wait_for(lambda: _messages(worker, 3))
        assert worker.stats.dead == Counter({"db_refused": 1})
        # And it keeps going.
        await js.publish(subject, encode(_batch(3)))
        await wait_for(lambda: _messages(worker, 4))
    assert await stored(env) == 15
    entries = [e async for e in dlq.entries(js, env.settings.subjects, "db_refused")]
    assert len(entries) == 1 and entries[0].data == encode(poison)
    assert "UntranslatableCharacter" in entries[0].error or "0000" in entries[0].error
    await nc.close()


async def test_a_msgpack_message_keeps_its_content_type_through_the_dlq(env: Env) -> None:
    nc, js = await streams_ready(env)
    subjects = env.settings.subjects
    subject = subjects.metrics("flood", "mixed")
    # An alias of MessagePack: the entry and its re-drive must carry it as it was.
    content_type = "application/x-msgpack"
    data = encode(_batch(7, bad=True), MSGPACK)
    await js.publish(subject, data, headers={"Content-Type": content_type})
    async with running_ingest(env) as worker:
        await wait_for(lambda: _messages(worker, 1))
        assert worker.stats.dead == Counter({"bad_name": 1})
        [entry] = [e async for e in dlq.entries(js, subjects)]
        assert (entry.data, entry.headers.get("Content-Type")) == (data, content_type)
        assert await dlq.redrive(js, subjects, entry.seq) == subject
        await wait_for(lambda: _messages(worker, 2))
        # Decoded as MessagePack again: the one bad sample is refused, not the whole message.
        assert worker.stats.dead == Counter({"bad_name": 2})
    assert await stored(env) == 5
    [again] = [e async for e in dlq.entries(js, subjects)]
    assert again.seq != entry.seq
    assert (again.data, again.headers.get("Content-Type")) == (data, content_type)
    await nc.close()


def _big(i: int) -> MetricBatch:
    sample = Sample("big_value", 5000.0 + i, {"n": str(i)})
    return MetricBatch(host="flood", plugin="big", ts=BASE_TS + i, seq=i, samples=[sample])


async def test_dlq_replay_cli_redrives_entries_once_the_cause_is_fixed(
    env: Env, tmp_path: Path
) -> None:
    nc, js = await streams_ready(env)
    subjects = env.settings.subjects
    subject = subjects.metrics("flood", "big")
    # A constraint these values break: PostgreSQL refuses them until it is dropped.
    await fetchval(env, "ALTER TABLE samples ADD CONSTRAINT below_1000 CHECK (value < 1000)")
    for i in range(3):
        await js.publish(subject, encode(_big(i)))
    await js.publish(subject, b"{not json")
    async with running_ingest(env) as worker:
        await wait_for(lambda: _messages(worker, 4))
    assert worker.stats.dead == Counter({"db_refused": 3, "malformed": 1})
    refused = [e.seq async for e in dlq.entries(js, subjects, "db_refused")]
    assert len(refused) == 3
    await fetchval(env, "ALTER TABLE samples DROP CONSTRAINT below_1000")

    cli_env = unity_env(env, tmp_path)
    one = Unity(cli_env, tmp_path / "one.log", "dlq", "replay", str(refused[0]))
    assert await asyncio.to_thread(one.proc.wait, 60) == 0, one.output()
    assert one.output().splitlines() == [f"{refused[0]} -> {subject}"]
    by_reason = Unity(cli_env, tmp_path / "reason.log", "dlq", "replay", "--reason", "db_refused")
    assert await asyncio.to_thread(by_reason.proc.wait, 60) == 0, by_reason.output()
    assert by_reason.output().splitlines() == [f"{seq} -> {subject}" for seq in refused[1:]]
    # Re-driven entries are gone; the other reason's entry stays.
    assert [e.reason async for e in dlq.entries(js, subjects)] == ["malformed"]
    gone = Unity(cli_env, tmp_path / "gone.log", "dlq", "replay", str(refused[0]))
    assert await asyncio.to_thread(gone.proc.wait, 60) == 1, gone.output()
    assert f"no dead letter with sequence {refused[0]}" in gone.output()

    async with running_ingest(env) as worker:
        await wait_for(lambda: _messages(worker, 3))
        assert worker.stats.dead_lettered == 0
    values = await fetchval(env, "SELECT array_agg(value ORDER BY value) FROM samples")
    assert values == [5000.0, 5001.0, 5002.0]
    await nc.close()
