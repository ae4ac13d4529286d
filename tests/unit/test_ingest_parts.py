"""Ingest pieces without servers: COPY encoding, worker settings, self-metrics, replay checks."""

from __future__ import annotations

import statistics
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from nats.aio.msg import Msg

from unity.compose.stack import HEALTHY_RUN_S, Service
from unity.compose.workers import Workers
from unity.ingest.catalogue import Catalogue, SeriesKey
from unity.ingest.copyformat import copy_data, copy_packed, pack_row, unpack_row, with_series
from unity.ingest.decoder import Decoder, Work
from unity.ingest.pipeline import COMMITS_KEPT, Stats
from unity.ingest.replay import Progress, Replay, ReplayError
from unity.ingest.report import PLUGIN, Reporter
from unity.ingest.streams import (
    consumer_config,
    ingest_filters,
    intersect,
    replay_config,
    replay_filters,
    stream_for,
)
from unity.schemas import MetricBatch, Sample, encode, split_batch
from unity.sdk.settings import load_settings, settings_env


def test_copy_data_is_postgres_binary_copy() -> None:
    ts = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    micros = round(ts.timestamp() * 1e6)
    data = copy_data([(micros, 7, 1.5), (micros + 1, 2**40, -0.25)])
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
    assert data.endswith(b"\xff\xff")
    body = data[19:-2]
    rows = [struct.unpack(">hiqiqid", body[i : i + 38]) for i in range(0, len(body), 38)]
    since_2000 = ts - datetime(2000, 1, 1, tzinfo=UTC)
    expected_us = since_2000 // timedelta(microseconds=1)
    assert rows == [
        (3, 8, expected_us, 8, 7, 8, 1.5),
        (3, 8, expected_us + 1, 8, 2**40, 8, -0.25),
    ]
    # The decoder packs rows one by one (a new series with id 0, filled in at commit).
    packed = [pack_row(micros, 0, 1.5), pack_row(micros + 1, 2**40, -0.25)]
    packed[0] = with_series(packed[0], 7)
    assert copy_packed(packed) == data
    assert [unpack_row(row) for row in packed] == [(micros, 7, 1.5), (micros + 1, 2**40, -0.25)]


def test_worker_children_rebuild_the_same_settings_from_the_environment() -> None:
    settings = load_settings(
        env={},
        data_dir="/srv/unity",  # children get the data folder absolute
        subject_root="tenant1",
        collect_plugins=["cpu", "memory"],
        ingest_fetch=123,
        api_open_reads=True,
        ingest_ack_wait_s=7.5,
    )
    assert load_settings(env=settings_env(settings)) == settings


def test_ingest_reports_itself_as_valid_samples() -> None:
    stats = Stats(batches=3, messages=30, samples=3000, redelivered=2, conflicts=7)
    stats.dead["malformed"] += 4
    stats.commit_seconds.extend([0.01, 0.02, 0.5])
    batch, health = Reporter("host1", "w1").batch(stats, {"UNITY_METRICS": (10, 500)}, 1, 0)
    assert (batch.plugin, batch.instance, health.plugin, health.status) == (
        PLUGIN,
        "w1",
        PLUGIN,
        "ok",
    )
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in batch.samples}
    assert values[("ingest_samples_total", ())] == 3000
    assert values[("ingest_conflicts_total", ())] == 7
    assert values[("ingest_dlq_total", (("reason", "malformed"),))] == 4
    assert values[("ingest_consumer_pending", (("stream", "UNITY_METRICS"),))] == 10
    assert values[("ingest_consumer_ack_pending", (("stream", "UNITY_METRICS"),))] == 500
    assert values[("ingest_commit_seconds", (("quantile", "1.0"),))] == 0.5
    assert values[("ingest_redeliveries_total", ())] == 2
    assert not stats.commit_seconds  # a quantile covers one interval
    _, bad = split_batch(batch, batch.ts.timestamp() if isinstance(batch.ts, datetime) else 0.0)
    assert bad == []
    _, degraded = Reporter("host1", "w1").batch(Stats(), {}, 5, 12)
    assert degraded.status == "degraded" and "12 series" in degraded.message


def test_commit_times_are_bounded_when_nobody_reports_them() -> None:
    stats = Stats()
    # A slow commit long ago, then more fast ones than are kept: the slow one is forgotten.
    stats.commit_seconds.append(9.0)
    for i in range(COMMITS_KEPT + 500):
        stats.commit_seconds.append(0.001 * (i % 100 + 1))
    assert len(stats.commit_seconds) == COMMITS_KEPT
    kept = list(stats.commit_seconds)
    batch, _ = Reporter("host1", "w0").batch(stats, {}, 0, 0)
    quantiles = {
        s.labels["quantile"]: s.value for s in batch.samples if s.name == "ingest_commit_seconds"
    }
    assert quantiles["1.0"] == max(kept) < 9.0
    assert quantiles["0.5"] == pytest.approx(statistics.median(kept))
    assert 0.098 <= quantiles["0.99"] <= max(kept)
    assert not stats.commit_seconds
    stats.commit_seconds.append(0.25)
    batch, _ = Reporter("host1", "w0").batch(stats, {}, 0, 0)
    single = [s.value for s in batch.samples if s.name == "ingest_commit_seconds"]
    assert single == [0.25, 0.25, 0.25]


def test_consumer_reads_ingest_subjects_only() -> None:
    settings = load_settings(env={}, subject_root="r", ingest_max_ack_pending=50_000)
    filters = ingest_filters(settings)
    assert filters == {
        "R_METRICS": ["r.metrics.>", "r.lp.>"],
        "R_EVENTS": ["r.events.>", "r.health.>"],
    }
    config = consumer_config(settings, filters["R_METRICS"])
    assert config.max_ack_pending == 50_000 and config.ack_wait == settings.ingest_ack_wait_s
    assert stream_for(settings, "r.metrics.nas.>") == ["R_METRICS"]
    assert stream_for(settings, "r.lp.web01") == ["R_METRICS"]
    assert stream_for(settings, "r.health.*.ups") == ["R_EVENTS"]
    assert stream_for(settings, "r.>") == ["R_METRICS", "R_EVENTS"]
    assert stream_for(settings, "r.alerts.>") == []


@pytest.mark.parametrize(
    ("a", "b", "both"),
    [
        ("r.metrics.>", "r.>", "r.metrics.>"),
        ("r.metrics.>", "r.metrics.nas.>", "r.metrics.nas.>"),
        ("r.metrics.>", "r.*.nas.ups", "r.metrics.nas.ups"),
        ("r.*.c", "r.b.*", "r.b.c"),
        ("*.>", ">", "*.>"),
        ("r.metrics.>", "r.metrics", None),  # ">" stands for at least one token
        ("r.metrics.>", "r.lp.>", None),
        ("r.*", "r.b.c", None),
    ],
)
def test_two_filters_intersect_token_by_token(a: str, b: str, both: str | None) -> None:
    assert intersect(a, b) == both
    assert intersect(b, a) == both


def test_replay_reads_only_what_ingest_reads_of_a_filter() -> None:
    settings = load_settings(env={}, subject_root="r")
    everything = ingest_filters(settings)
    # Alerts share the events stream but are not ingest's: a broad filter must not read them.
    assert replay_filters(settings, "r.>") == replay_filters(settings, None) == everything
    assert replay_filters(settings, "r.*.nas.>") == {
        "R_METRICS": ["r.metrics.nas.>", "r.lp.nas.>"],
        "R_EVENTS": ["r.events.nas.>", "r.health.nas.>"],
    }
    assert replay_filters(settings, "r.metrics.nas.ups") == {"R_METRICS": ["r.metrics.nas.ups"]}
    assert replay_filters(settings, "r.alerts.>") == {}
    since = datetime(2026, 11, 23, tzinfo=UTC)
    config = replay_config(since, "r.>", settings, "R_EVENTS")
    assert config.filter_subjects == ["r.events.>", "r.health.>"]
    assert (
        replay_config(since, None, settings, "R_METRICS").filter_subjects == everything["R_METRICS"]
    )


@pytest.mark.parametrize(
    ("since", "until", "subject", "message"),
    [
        (1, 0, None, "is not before until"),
        (0, 1, "other.metrics.>", "is not under r."),
        (0, 1, "r.alerts.>", "is not read by ingest"),
    ],
)
def test_replay_refuses_bad_requests(
    since: int, until: int, subject: str | None, message: str
) -> None:
    settings = load_settings(env={}, subject_root="r")
    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    # The constructor does no I/O: no connections are needed to validate a request.
    none = cast(Any, None)
    with pytest.raises(ReplayError, match=message):
        Replay(
            settings, none, none, t0 + timedelta(hours=since), t0 + timedelta(hours=until), subject
        )


def test_replay_progress_rate_and_eta() -> None:
    progress = Progress(total=100, done=25, started=10.0, finished=15.0)
    assert progress.elapsed == 5.0
    assert progress.rate == 5.0
    assert progress.eta == 15.0


def js_msg(batch: MetricBatch, seq: int) -> Msg:
    """A JetStream message as a pull fetch delivers it (the reply subject holds the metadata)."""
    reply = f"$JS.ACK.UNITY_METRICS.ingest.1.{seq}.{seq}.1795435200000000000.0"
    subject = f"unity.metrics.{batch.host}.{batch.plugin}"
    return Msg(cast(Any, None), subject=subject, reply=reply, data=encode(batch))


def learn_all(catalogue: Catalogue, work: Work) -> dict[SeriesKey, int]:
    """What a commit does: give each new series an id and cache it."""
    ids: dict[SeriesKey, int] = {}
    for _, _, spec in work.unresolved:
        ids.setdefault(spec.key, 100 + len(ids))
    catalogue.learn(ids, work.unresolved)
    return ids


def test_decoder_reuses_a_sources_series_only_when_names_and_labels_match() -> None:
    catalogue = Catalogue()
    decoder = Decoder(catalogue)
    ts = 1_795_435_000.0

    def batch(*samples: Sample, seq: int = 0) -> MetricBatch:
        return MetricBatch("nas", "disk", list(samples), ts=ts + seq, seq=seq)

    a = Sample("disk_used", 1.0, {"dev": "sda", "mount": "/"})
    b = Sample("disk_used", 2.0, {"dev": "sdb", "mount": "/data"})
    first = decoder.decode([js_msg(batch(a, b), 1)])
    assert [unpack_row(row)[1] for row in first.rows] == [0, 0] and len(first.unresolved) == 2
    ids = learn_all(catalogue, first)
    id_a, id_b = (ids[spec.key] for _, _, spec in first.unresolved)

    # The same series again, then with labels reordered: the ids come from the cache.
    same = decoder.decode([js_msg(batch(a, b, seq=1), 2)])
    reordered = Sample("disk_used", 3.0, {"mount": "/", "dev": "sda"})
    again = decoder.decode([js_msg(batch(reordered, b, seq=2), 3)])
    assert [unpack_row(row)[1:] for row in same.rows] == [(id_a, 1.0), (id_b, 2.0)]
    assert [unpack_row(row)[1:] for row in again.rows] == [(id_a, 3.0), (id_b, 2.0)]
    assert same.unresolved == [] and again.unresolved == []

    # Same count, other series or order: never the ids of the last batch by position.
    swapped = decoder.decode([js_msg(batch(b, a, seq=3), 4)])
    assert [unpack_row(row)[1] for row in swapped.rows] == [id_b, id_a]
    c = Sample("disk_used", 4.0, {"dev": "sdc", "mount": "/"})
    changed = decoder.decode([js_msg(batch(a, c, seq=4), 5)])
    assert [unpack_row(row)[1] for row in changed.rows] == [id_a, 0]
    assert [spec.key.labels for _, _, spec in changed.unresolved] == ['{"dev":"sdc","mount":"/"}']
    renamed = Sample("disk_free", 2.0, {"dev": "sdb", "mount": "/data"})
    other = decoder.decode([js_msg(batch(a, renamed, seq=5), 6)])
    assert [unpack_row(row)[1] for row in other.rows] == [id_a, 0]

    # A rejected sample leaves the others with their own ids; the message is dead-lettered.
    bad = Sample("bad name", 5.0, {"dev": "sda", "mount": "/"})
    partly = decoder.decode([js_msg(batch(bad, b, seq=6), 7)])
    assert [unpack_row(row)[1:] for row in partly.rows] == [(id_b, 2.0)]
    assert [(d.reason, d.msg.metadata.sequence.stream) for d in partly.dead] == [("bad_name", 7)]


def test_decoder_keeps_the_newest_value_per_series_for_valkey() -> None:
    catalogue = Catalogue()
    decoder = Decoder(catalogue)
    old, new = 1_795_435_000.0, 1_795_435_060.0
    s = Sample("ups_load", 1.0, {"ups": "apc"})
    learn_all(catalogue, decoder.decode([js_msg(MetricBatch("nas", "ups", [s], ts=old), 1)]))
    msgs = [
        js_msg(MetricBatch("nas", "ups", [Sample("ups_load", 2.0, {"ups": "apc"})], ts=new), 2),
        js_msg(MetricBatch("nas", "ups", [Sample("ups_load", 3.0, {"ups": "apc"})], ts=old), 3),
        js_msg(MetricBatch("nas", "ups", [Sample("ups_load", 4.0, {"ups": "apc"}, ts=new)]), 4),
    ]
    latest = decoder.decode(msgs).latest()
    # The newest time wins; on a tie the message read last.
    assert [(v.value, v.ts.timestamp()) for v in latest] == [(4.0, new)]


def test_own_sample_times_are_compared_one_by_one_for_the_newest_value() -> None:
    catalogue = Catalogue()
    decoder = Decoder(catalogue)
    t0 = 1_795_435_000.0

    def batch(ts: float, *samples: Sample) -> MetricBatch:
        return MetricBatch("nas", "ups", list(samples), ts=ts)

    def volts(value: float, ts: float | None = None) -> Sample:
        return Sample("ups_volts", value, {"phase": "1"}, ts=ts)

    def load(value: float, ts: float | None = None) -> Sample:
        return Sample("ups_load", value, {"phase": "1"}, ts=ts)

    learn_all(catalogue, decoder.decode([js_msg(batch(t0, volts(0.0), load(0.0)), 1)]))
    msgs = [
        js_msg(batch(t0 + 10, volts(1.0), load(1.0)), 2),
        # A later batch time, but its samples carry older times of their own (a backfill).
        js_msg(batch(t0 + 20, volts(2.0, t0 + 5), load(2.0, t0 + 6)), 3),
        js_msg(batch(t0 + 8, volts(3.0), load(3.0)), 4),
        # Older than message 2 for volts; the same time for load, and read later: it wins.
        js_msg(batch(t0 + 30, volts(4.0, t0 + 9), load(4.0, t0 + 10)), 5),
    ]
    work = decoder.decode(msgs)
    assert len(work.rows) == 8 and work.unresolved == []
    got = {v.name: (v.value, v.ts.timestamp()) for v in work.latest()}
    assert got == {"ups_volts": (1.0, t0 + 10), "ups_load": (4.0, t0 + 10)}


def test_restart_delays_double_and_start_over_after_a_healthy_run(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path))
    service = Service("ingest", settings)
    workers = Workers(settings, 1)
    # A service or worker that dies right after each start waits longer each time...
    assert [service.restart_delay(0.5) for _ in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert [workers.restart_delay("w0", 0.5) for _ in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    # ...and one that ran a healthy while first is restarted quickly again.
    assert service.restart_delay(HEALTHY_RUN_S) == 2
    assert workers.restart_delay("w0", HEALTHY_RUN_S) == 2
    assert service.restart_delay(0.5) == 4


def test_a_message_that_fails_unexpectedly_is_dead_lettered_and_the_rest_goes_on() -> None:
    batch = MetricBatch("nas", "disk", [Sample("disk_used", 1.0)], ts=1_795_435_000.0)
    first, last = js_msg(batch, 1), js_msg(batch, 3)
    # No JetStream reply subject, so no metadata: reading it raises, as a bug would.
    odd = Msg(cast(Any, None), subject=first.subject, reply="", data=first.data)
    work = Decoder(Catalogue()).decode([first, odd, last])
    assert [(d.msg is odd, d.reason) for d in work.dead] == [(True, "internal_error")]
    assert work.dead[0].message.startswith("NotJSMessageError")
    assert len(work.rows) == 2
    assert work.message_of(0) is first and work.message_of(1) is last
