"""Golden encodings of every wire message: the contract as bytes, in JSON and MessagePack.

The files are written once and never regenerated to make a test pass: a message that no longer
decodes from them, or no longer encodes to them, breaks producers already in the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from tests.contract.messages import GOLDEN
from unity.schemas import JSON, MESSAGE_TYPES, MSGPACK, WireMessage, decode, encode
from unity.schemas.jsonschema import SCHEMA_DIR, file_name

HERE = Path(__file__).parent / "golden"
NAMES = sorted(GOLDEN)


def test_every_wire_type_has_a_golden_message() -> None:
    assert {type(m) for m in GOLDEN.values()} == set(MESSAGE_TYPES)
    assert {f"{n}.json" for n in NAMES} == {file_name(t) for t in MESSAGE_TYPES}


@pytest.mark.parametrize("name", NAMES)
def test_golden_json_decodes_to_the_message_and_back(name: str) -> None:
    msg = GOLDEN[name]
    raw = (HERE / f"{name}.json").read_bytes()
    assert decode(raw, type(msg), JSON) == msg  # type: ignore[type-var]
    assert msgspec.json.format(encode(msg, JSON), indent=2) + b"\n" == raw


@pytest.mark.parametrize("name", NAMES)
def test_golden_msgpack_decodes_to_the_message_and_back(name: str) -> None:
    msg = GOLDEN[name]
    raw = (HERE / f"{name}.msgpack").read_bytes()
    assert decode(raw, type(msg), MSGPACK) == msg  # type: ignore[type-var]
    assert encode(msg, MSGPACK) == raw


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
def test_every_message_round_trips(name: str, content_type: str) -> None:
    msg: WireMessage = GOLDEN[name]
    assert decode(encode(msg, content_type), type(msg), content_type) == msg  # type: ignore[type-var]


@pytest.mark.parametrize("name", NAMES)
def test_golden_json_is_valid_under_the_checked_in_json_schema(name: str) -> None:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    instance = json.loads((HERE / f"{name}.json").read_text())
    jsonschema.validate(instance, schema, format_checker=jsonschema.FormatChecker())


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    return loaded


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda m: m["samples"][0].update(name="9bad"), "name"),
        (lambda m: m["samples"][0]["labels"].update({"x" * 201: "v"}), "labels"),
        (lambda m: m["samples"][0]["labels"].update(ups="v" * 257), "ups"),
        (lambda m: m["samples"][0].update(value="high"), "value"),
        (lambda m: m.pop("host"), "host"),
    ],
    ids=["bad-name", "long-label-name", "long-label-value", "string-value", "no-host"],
)
def test_json_schema_rejects_what_the_decoder_or_validator_rejects(mutate: Any, path: str) -> None:
    instance = json.loads((HERE / "metric_batch.json").read_text())
    mutate(instance)
    with pytest.raises(jsonschema.ValidationError, match=path):
        jsonschema.validate(instance, _schema("metric_batch"))
