from __future__ import annotations

import math
from datetime import UTC, datetime

import msgspec
import pytest

from schemas import (
    JSON,
    MSGPACK,
    DecodeError,
    Event,
    HealthReport,
    MetricBatch,
    Sample,
    decode,
    encode,
    split_batch,
    token,
)

BATCH = MetricBatch(
    host="nas",
    plugin="ups",
    instance="rack",
    ts=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
    seq=7,
    samples=[
        Sample("ups_load_percent", 41.0, {"ups": "apc"}, "percent"),
        Sample("ups_output_wh", 1234.5, kind="counter", unit="wh", ts=1_795_000_000.0),
    ],
)
HEALTH = HealthReport(host="nas", plugin="ups", status="degraded", message="on battery", samples=2)
EVENT = Event(host="nas", plugin="ups", kind="on_battery", severity="warning", data={"x": [1, 2]})


@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
@pytest.mark.parametrize("msg", [BATCH, HEALTH, EVENT], ids=["batch", "health", "event"])
def test_every_message_round_trips_json_and_msgpack(
    msg: MetricBatch | HealthReport | Event, content_type: str
) -> None:
    assert decode(encode(msg, content_type), type(msg), content_type) == msg  # type: ignore[type-var]


def test_json_is_what_nats_pub_users_write() -> None:
    raw = (
        b'{"host":"h","plugin":"p","ts":"2026-11-23T12:00:00Z","samples":[{"name":"x","value":1}]}'
    )
    batch = decode(raw, MetricBatch)
    assert batch.samples[0].kind == "gauge" and batch.samples[0].labels == {}
    assert batch.ts == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_unknown_wire_fields_are_ignored_so_old_decoders_read_new_messages() -> None:
    raw = b'{"host":"h","plugin":"p","samples":[],"added_in_v9":{"a":1}}'
    assert decode(raw, MetricBatch).host == "h"


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(DecodeError) as err:
        decode(b'{"host":"h","plugin":"p","ts":"2026-11-23T12:00:00","samples":[]}', MetricBatch)
    assert err.value.reason == "invalid"


def test_malformed_and_invalid_have_distinct_reasons() -> None:
    with pytest.raises(DecodeError) as malformed:
        decode(b"{oops", MetricBatch)
    with pytest.raises(DecodeError) as invalid:
        decode(b'{"host":"h","plugin":"p","samples":[{"name":"x","value":"high"}]}', MetricBatch)
    assert (malformed.value.reason, invalid.value.reason) == ("malformed", "invalid")
    assert "samples[0].value" in str(invalid.value)


def test_split_batch_keeps_good_samples_and_names_each_rejection() -> None:
    now = 1_795_000_000.0
    batch = MetricBatch(
        host="h",
        plugin="p",
        samples=[
            Sample("fine", 1.0),
            Sample("nan_value", math.nan),
            Sample("9starts_with_digit", 1.0),
            Sample("future", 1.0, ts=now + 3600),
            Sample("lbl", 1.0, labels={"bad key": "v"}),
        ],
    )
    good, bad = split_batch(batch, now, now=now)
    assert [s.name for s, _ in good] == ["fine"]
    assert [(b.index, b.reason) for b in bad] == [
        (1, "non_finite"),
        (2, "bad_name"),
        (3, "ts_in_future"),
        (4, "bad_label"),
    ]


def test_tokens_are_sanitised_not_rejected() -> None:
    assert token("My.NAS box") == "My_NAS_box"
    assert token("") == "_"


def test_sample_is_immutable() -> None:
    with pytest.raises(AttributeError):
        BATCH.samples[0].value = 2.0  # type: ignore[misc]


def test_msgpack_and_json_differ_on_the_wire() -> None:
    assert encode(BATCH, MSGPACK) != encode(BATCH, JSON)
    assert msgspec.json.decode(encode(BATCH, JSON))["samples"][1]["kind"] == "counter"
