"""Ingest pieces without servers: COPY encoding, worker settings, self-metrics, replay checks."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from compose.settings import load_settings
from ingest.pipeline import Stats
from ingest.replay import Progress, Replay, ReplayError
from ingest.report import PLUGIN, Reporter
from ingest.streams import consumer_config, ingest_filters, stream_for
from ingest.workers import settings_env
from ingest.writer import copy_data
from schemas import split_batch


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


def test_worker_children_rebuild_the_same_settings_from_the_environment() -> None:
    settings = load_settings(
        env={},
        subject_root="tenant1",
        collect_plugins=["cpu", "memory"],
        ingest_fetch=123,
        api_open_reads=True,
        ingest_ack_wait_s=7.5,
    )
    assert load_settings(env=settings_env(settings)) == settings


def test_ingest_reports_itself_as_valid_samples() -> None:
    stats = Stats(batches=3, messages=30, samples=3000, redelivered=2)
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
    assert values[("ingest_dlq_total", (("reason", "malformed"),))] == 4
    assert values[("ingest_consumer_pending", (("stream", "UNITY_METRICS"),))] == 10
    assert values[("ingest_consumer_ack_pending", (("stream", "UNITY_METRICS"),))] == 500
    assert values[("ingest_commit_seconds", (("quantile", "1.0"),))] == 0.5
    assert values[("ingest_redeliveries_total", ())] == 2
    assert stats.commit_seconds == []  # a quantile covers one interval
    _, bad = split_batch(batch, batch.ts.timestamp() if isinstance(batch.ts, datetime) else 0.0)
    assert bad == []
    _, degraded = Reporter("host1", "w1").batch(Stats(), {}, 5, 12)
    assert degraded.status == "degraded" and "12 series" in degraded.message


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
