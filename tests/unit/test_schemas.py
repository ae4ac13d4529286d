from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from msgspec import inspect

from tests.contract.messages import GOLDEN
from unity.schemas import (
    JSON,
    MAX_HOST_LEN,
    MAX_INSTANCE_LEN,
    MAX_LABEL_VALUE_LEN,
    MAX_LABELS,
    MAX_NAME_LEN,
    MAX_PAYLOAD_BYTES,
    MAX_PLUGIN_LEN,
    MAX_SAMPLES,
    MAX_UNIT_LEN,
    MESSAGE_TYPES,
    MSGPACK,
    REASONS,
    DecodeError,
    Event,
    HealthReport,
    MetricBatch,
    PluginSettings,
    Sample,
    check_name,
    check_sample,
    decode,
    encode,
    media_type,
    settings_key,
    split_batch,
    token,
    validate,
)
from unity.schemas import jsonschema as schema_files

NOW = 1_795_435_200.0

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


def test_json_is_what_nats_pub_users_write() -> None:
    raw = (
        b'{"host":"h","plugin":"p","ts":"2026-11-23T12:00:00Z","samples":[{"name":"x","value":1}]}'
    )
    batch = decode(raw, MetricBatch)
    assert batch.samples[0].kind == "gauge" and batch.samples[0].labels == {}
    assert batch.ts == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert batch.v == 1


class SampleV1(msgspec.Struct):
    """What a v1-era reader knows of a sample."""

    name: str
    value: float


class MetricBatchV1(msgspec.Struct):
    host: str
    plugin: str
    samples: list[SampleV1]


def test_unknown_wire_fields_are_ignored_so_old_decoders_read_new_messages() -> None:
    newer = msgspec.json.encode(
        {
            "v": 3,
            "host": "h",
            "plugin": "p",
            "added_in_v3": {"a": 1},
            "samples": [{"name": "x", "value": 2.0, "exemplar": {"trace": "t"}}],
        }
    )
    assert decode(newer, MetricBatch).v == 3
    old = msgspec.json.decode(newer, type=MetricBatchV1)
    assert (old.host, old.samples[0].value) == ("h", 2.0)
    # And what this version writes, a v1-only reader still understands.
    assert msgspec.json.decode(encode(BATCH), type=MetricBatchV1).samples[1].value == 1234.5


def with_unknown_fields(value: Any, info: inspect.Type) -> Any:
    """``value`` (builtins) with a field no Struct knows added to every Struct-typed object."""
    if isinstance(info, inspect.Metadata):
        return with_unknown_fields(value, info.type)
    if isinstance(info, inspect.UnionType):
        structs = [t for t in info.types if isinstance(t, inspect.StructType)]
        return with_unknown_fields(value, structs[0]) if structs and value is not None else value
    if isinstance(info, inspect.StructType):
        fields = {f.encode_name: f.type for f in info.fields}
        out = {k: with_unknown_fields(v, fields[k]) for k, v in value.items()}
        return {**out, "added_in_v9": {"nested": [1, "two"]}}
    if isinstance(info, inspect.ListType):
        return [with_unknown_fields(item, info.item_type) for item in value]
    return value


def test_golden_messages_cover_every_message_type() -> None:
    assert {type(m) for m in GOLDEN.values()} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
def test_every_message_type_reads_a_newer_message_with_unknown_fields(
    name: str, content_type: str
) -> None:
    golden = GOLDEN[name]
    message_type: Any = type(golden)  # one of decode's constrained types
    newer = with_unknown_fields(msgspec.to_builtins(golden), inspect.type_info(message_type))
    assert "added_in_v9" in newer
    raw = msgspec.json.encode(newer) if content_type == JSON else msgspec.msgpack.encode(newer)
    assert decode(raw, message_type, content_type) == golden


def struct_types(info: inspect.Type, seen: dict[type[Any], inspect.StructType]) -> None:
    if isinstance(info, inspect.StructType):
        if info.cls in seen:
            return
        seen[info.cls] = info
        children: list[inspect.Type] = [f.type for f in info.fields]
    elif isinstance(info, inspect.Metadata):
        children = [info.type]
    elif isinstance(info, inspect.UnionType):
        children = list(info.types)
    elif isinstance(info, inspect.ListType | inspect.DictType):
        children = [info.item_type] if isinstance(info, inspect.ListType) else [info.value_type]
    else:
        children = []
    for child in children:
        struct_types(child, seen)


def test_no_wire_struct_forbids_unknown_fields() -> None:
    seen: dict[type[Any], inspect.StructType] = {}
    for type_ in MESSAGE_TYPES:
        struct_types(inspect.type_info(type_), seen)
    assert {t.__name__ for t in seen} >= {
        "Sample",
        "MetricInfo",
        *(t.__name__ for t in MESSAGE_TYPES),
    }
    assert [t.__name__ for t, info in seen.items() if info.forbid_unknown_fields] == []


def test_new_fields_have_defaults_so_new_decoders_read_old_messages() -> None:
    oldest = b'{"host":"h","plugin":"p","status":"ok"}'
    report = decode(oldest, HealthReport)
    assert (report.instance, report.message, report.samples, report.ts) == ("", "", 0, None)


@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
def test_payload_size_is_limited_before_decoding(content_type: str) -> None:
    big = MetricBatch("h", "p", [Sample("x", 1.0, {"k": "v" * 200}) for _ in range(6000)])
    data = encode(big, content_type)
    assert len(data) > MAX_PAYLOAD_BYTES
    with pytest.raises(DecodeError) as err:
        decode(data, MetricBatch, content_type)
    assert err.value.reason == "too_large" and str(MAX_PAYLOAD_BYTES) in str(err.value)
    assert decode(data, MetricBatch, content_type, max_bytes=len(data)).samples[0].name == "x"


def test_content_type_picks_the_codec_and_unknown_ones_are_refused() -> None:
    assert media_type("application/x-msgpack") == MSGPACK
    assert media_type("application/json; charset=utf-8") == JSON
    assert media_type(None) == JSON
    assert decode(encode(BATCH, MSGPACK), MetricBatch, "application/vnd.msgpack") == BATCH
    with pytest.raises(DecodeError) as err:
        decode(encode(BATCH), MetricBatch, "text/xml")
    assert err.value.reason == "unsupported_content_type"


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


CASES = [
    (Sample("fine", 1.0), None),
    (Sample("9starts_with_digit", 1.0), "bad_name"),
    (Sample("has space", 1.0), "bad_name"),
    (Sample("n" * (MAX_NAME_LEN + 1), 1.0), "name_too_long"),
    (Sample("n" * MAX_NAME_LEN, 1.0), None),
    (Sample("nan_value", math.nan), "non_finite"),
    (Sample("inf_value", -math.inf), "non_finite"),
    (Sample("labels", 1.0, {f"k{i}": "v" for i in range(MAX_LABELS + 1)}), "too_many_labels"),
    (Sample("labels", 1.0, {f"k{i}": "v" for i in range(MAX_LABELS)}), None),
    (Sample("lbl", 1.0, labels={"bad key": "v"}), "bad_label_name"),
    (Sample("lbl", 1.0, labels={"k" * (MAX_NAME_LEN + 1): "v"}), "bad_label_name"),
    (Sample("lbl", 1.0, labels={"k": "v" * (MAX_LABEL_VALUE_LEN + 1)}), "label_value_too_long"),
    (Sample("lbl", 1.0, labels={"k": "v" * MAX_LABEL_VALUE_LEN}), None),
    (Sample("future", 1.0, ts=NOW + 3600), "ts_in_future"),
    (Sample("skew", 1.0, ts=NOW + 60), None),
    (Sample("ancient", 1.0, ts=-1.0), "ts_before_epoch"),
    (Sample("ancient", 1.0, ts=datetime(1969, 12, 31, tzinfo=UTC)), "ts_before_epoch"),
    (Sample("unit", 1.0, unit="u" * (MAX_UNIT_LEN + 1)), "unit_too_long"),
    (Sample("unit", 1.0, unit="u" * MAX_UNIT_LEN), None),
]


@pytest.mark.parametrize(("sample", "reason"), CASES)
def test_each_sample_limit_has_its_own_reason(sample: Sample, reason: str | None) -> None:
    good, bad = split_batch(MetricBatch("h", "p", [Sample("ok", 1.0), sample]), NOW, now=NOW)
    assert [(b.index, b.reason) for b in bad] == ([] if reason is None else [(1, reason)])
    assert len(good) == (2 if reason is None else 1)
    if reason is not None:
        assert reason in REASONS and sample.name[:20] in bad[0].message


def test_non_finite_survives_msgpack_and_is_rejected() -> None:
    raw = encode(MetricBatch("h", "p", [Sample("x", math.nan)]), MSGPACK)
    _, bad = split_batch(decode(raw, MetricBatch, MSGPACK), NOW, now=NOW)
    assert [b.reason for b in bad] == ["non_finite"]


def test_non_finite_health_duration_is_rejected_when_decoded() -> None:
    raw = encode(HealthReport("h", "p", "ok", duration_ms=math.inf), MSGPACK)
    with pytest.raises(DecodeError) as err:
        decode(raw, HealthReport, MSGPACK)
    assert err.value.reason == "non_finite"


SOURCES = [
    (("h" * MAX_HOST_LEN, "p", ""), None),
    (("h" * (MAX_HOST_LEN + 1), "p", ""), "host_too_long"),
    (("p", "p" * MAX_PLUGIN_LEN, ""), None),
    (("p", "p" * (MAX_PLUGIN_LEN + 1), ""), "plugin_too_long"),
    (("h", "p", "i" * MAX_INSTANCE_LEN), None),
    (("h", "p", "i" * (MAX_INSTANCE_LEN + 1)), "instance_too_long"),
    # Counted once sanitised: any alphabet or case is fine, surrounding blanks are stripped.
    (("My.Host " * 31 + "ab", "Plug.In" * 9, "Rack 2/" * 18), None),
    (("  " + "h" * MAX_HOST_LEN + "  ", " " + "P" * MAX_PLUGIN_LEN, "é" * MAX_INSTANCE_LEN), None),
]


@pytest.mark.parametrize(("source", "reason"), SOURCES)
def test_host_plugin_and_instance_lengths_count_once_sanitised(
    source: tuple[str, str, str], reason: str | None
) -> None:
    host, plugin, instance = source
    good, bad = split_batch(
        MetricBatch(host, plugin, [Sample("x", 1.0)], instance=instance), NOW, now=NOW
    )
    assert [(b.index, b.reason) for b in bad] == ([] if reason is None else [(-1, reason)])
    assert len(good) == (1 if reason is None else 0)
    messages: list[tuple[HealthReport | Event, Any]] = [
        (HealthReport(host, plugin, "ok", instance=instance), HealthReport),
        (Event(host, plugin, "k", instance=instance), Event),
    ]
    for msg, type_ in messages:
        if reason is None:
            assert decode(encode(msg), type_, now=NOW) == msg
        else:
            with pytest.raises(DecodeError) as err:
                decode(encode(msg), type_, now=NOW)
            assert err.value.reason == reason and reason.split("_")[0] in str(err.value)
    if reason is not None:
        assert reason in REASONS


def test_too_many_samples_rejects_the_whole_batch() -> None:
    batch = MetricBatch("h", "p", [Sample("x", float(i)) for i in range(MAX_SAMPLES + 1)])
    good, bad = split_batch(batch, NOW, now=NOW)
    assert good == [] and [(b.index, b.reason) for b in bad] == [(-1, "too_many_samples")]


@pytest.mark.parametrize(
    ("ts", "reason"),
    [(NOW + 86400, "ts_in_future"), (-5.0, "ts_before_epoch"), (NOW - 86400 * 365, None)],
)
def test_batch_timestamp_is_checked_once(ts: float, reason: str | None) -> None:
    good, bad = split_batch(MetricBatch("h", "p", [Sample("x", 1.0)], ts=ts), ts, now=NOW)
    assert [(b.index, b.reason) for b in bad] == ([] if reason is None else [(-1, reason)])
    assert len(good) == (1 if reason is None else 0)


@pytest.mark.parametrize(
    ("raw", "type_", "reason"),
    [
        (b'{"host":"h","plugin":"p","kind":"bad kind!"}', Event, "bad_name"),
        (b'{"host":"h","plugin":"p","kind":"k","ts":4102444800}', Event, "ts_in_future"),
        (b'{"host":"h","plugin":"p","status":"ok","ts":-1}', HealthReport, "ts_before_epoch"),
        (b'{"host":"h","plugin":"p","status":"fine"}', HealthReport, "invalid"),
        (b'{"host":"h","plugin":"p","kind":"k","severity":"loud"}', Event, "invalid"),
    ],
)
def test_events_and_health_reports_are_checked_when_decoded(
    raw: bytes, type_: type[Event], reason: str
) -> None:
    with pytest.raises(DecodeError) as err:
        decode(raw, type_, now=NOW)
    assert err.value.reason == reason


def test_reason_codes_are_subject_tokens() -> None:
    assert all(token(r) == r and r == r.lower() for r in REASONS)


def test_tokens_are_sanitised_not_rejected() -> None:
    assert token("My.NAS box") == "My_NAS_box"
    assert token("") == "_"


def test_settings_key_names_the_default_instance() -> None:
    assert settings_key("nas.lan", "ups") == "nas_lan.ups._"
    assert settings_key("nas", "ups", "rack 2") == "nas.ups.rack_2"
    value = PluginSettings(interval_s=5.0, revision=2)
    assert decode(encode(value), PluginSettings) == value


def test_sample_is_immutable() -> None:
    with pytest.raises(AttributeError):
        BATCH.samples[0].value = 2.0  # type: ignore[misc]


def test_msgpack_and_json_differ_on_the_wire() -> None:
    assert encode(BATCH, MSGPACK) != encode(BATCH, JSON)
    assert msgspec.json.decode(encode(BATCH, JSON))["samples"][1]["kind"] == "counter"


def test_encode_refuses_unknown_content_types() -> None:
    with pytest.raises(ValueError, match="text/xml"):
        encode(BATCH, "text/xml")


def test_checked_in_json_schemas_match_the_structs() -> None:
    assert schema_files.drift() == [], "run: python -m schemas.jsonschema"


def test_schema_drift_is_detected_and_rewritten(tmp_path: Path) -> None:
    assert schema_files.write(tmp_path) == sorted(schema_files.generate())
    (tmp_path / "metric_batch.json").write_text("{}\n")
    (tmp_path / "retired.json").write_text("{}\n")
    assert schema_files.drift(tmp_path) == ["metric_batch.json", "retired.json"]
    assert schema_files.main(["--check", "--dir", str(tmp_path)]) == 1
    assert schema_files.main(["--dir", str(tmp_path)]) == 0
    assert schema_files.drift(tmp_path) == []


def test_future_clock_is_the_receivers() -> None:
    soon = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=200)
    assert split_batch(MetricBatch("h", "p", [Sample("x", 1.0, ts=soon)]), NOW, now=NOW)[1] == []


def test_split_batch_agrees_with_check_sample_once_names_are_known() -> None:
    # split_batch accepts most samples by a shortcut over names it has seen before: it must
    # give the same verdicts, epochs and reasons as check_sample, on first sight and after.
    rng = random.Random(4)
    names = ["split_ok", "split_also_ok", "split bad", "n" * (MAX_NAME_LEN + 1), "9split"]
    values = [1.0, -2.5, math.nan, math.inf]
    label_sets: list[dict[str, str]] = [
        {},
        {"k": "v"},
        {"k": "v", "split_key": "w"},
        {"split key": "v"},
        {"k": "v" * (MAX_LABEL_VALUE_LEN + 1)},
        {f"k{i}": "v" for i in range(MAX_LABELS + 1)},
    ]
    stamps: list[datetime | float | None] = [
        None,
        None,
        NOW - 5,
        NOW + 3600,
        -1.0,
        math.nan,
        datetime.fromtimestamp(NOW - 60, UTC),
        datetime(1969, 12, 31, tzinfo=UTC),
    ]
    units = ["", "bytes", "u" * (MAX_UNIT_LEN + 1)]
    samples = [
        Sample(
            rng.choice(names),
            rng.choice(values),
            rng.choice(label_sets),
            rng.choice(units),
            ts=rng.choice(stamps),
        )
        for _ in range(400)
    ]
    batch = MetricBatch("h", "p", samples)
    for default_ts in (NOW, NOW + 3600, -5.0, math.nan):
        for _ in range(2):  # the second pass meets only names the first one checked
            good, bad = split_batch(batch, default_ts, now=NOW)
            verdicts = [check_sample(s, default_ts, NOW) for s in samples]
            assert [s for s, _ in good] == [
                s for s, v in zip(samples, verdicts, strict=True) if v is None
            ]
            assert [(b.index, b.reason) for b in bad] == [
                (i, v[0]) for i, v in enumerate(verdicts) if v is not None
            ]
            for sample, at in good:
                expected = default_ts if sample.ts is None else validate.epoch(sample.ts)
                assert at == expected
    assert len({b.reason for b in split_batch(batch, NOW, now=NOW)[1]}) >= 7


def test_known_good_names_are_remembered_within_a_bound() -> None:
    assert check_name("remembered_name") is None
    assert "remembered_name" in validate._known_names
    assert check_name("not remembered") is not None
    assert "not remembered" not in validate._known_names
    for i in range(validate._KNOWN_NAMES_MAX + 10):
        assert check_name(f"flood_{i}") is None
    assert len(validate._known_names) <= validate._KNOWN_NAMES_MAX
    # A cleared memory only costs the check again.
    assert check_name("remembered_name") is None
    too_long = check_name("n" * (MAX_NAME_LEN + 1))
    assert too_long is not None and too_long[0] == "name_too_long"
