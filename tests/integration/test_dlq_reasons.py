"""Every kind of malformed message lands in the dead-letter stream with its own reason."""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec
from nats.aio.msg import Msg

from tests.helpers import count, running_ingest, wait_for
from tests.servers import Env
from unity.ingest.streams import ensure_consumers, ensure_streams
from unity.schemas import (
    MAX_HOST_LEN,
    MAX_INSTANCE_LEN,
    MAX_LABELS,
    MAX_NAME_LEN,
    MAX_PAYLOAD_BYTES,
    MAX_PLUGIN_LEN,
    MAX_SAMPLES,
    MAX_UNIT_LEN,
    MSGPACK,
    REASONS,
    MetricBatch,
    Sample,
    encode,
)
from unity.sdk.connection import connect_nats

GOOD = {"name": "good_metric", "value": 1.0}


def batch_with(*samples: dict[str, Any], **fields: Any) -> bytes:
    return msgspec.json.encode({"host": "h", "plugin": "p", "samples": [GOOD, *samples], **fields})


def cases() -> list[tuple[str, str, bytes, dict[str, str], int]]:
    """(kind, expected reason, payload, headers, good samples it still carries)."""
    now = time.time()
    padding = "x" * (MAX_PAYLOAD_BYTES // 2)
    return [
        ("metrics", "malformed", b'{"host": "h", "plugin": ', {}, 0),
        ("metrics", "invalid", batch_with({"name": "x", "value": "high"}), {}, 0),
        ("metrics", "too_large", batch_with(labels={"a": padding, "b": padding}), {}, 0),
        ("metrics", "unsupported_content_type", batch_with(), {"Content-Type": "text/xml"}, 0),
        (
            "metrics",
            "too_many_samples",
            msgspec.json.encode(
                {"host": "h", "plugin": "p", "samples": [GOOD] * (MAX_SAMPLES + 1)}
            ),
            {},
            0,
        ),
        ("metrics", "bad_name", batch_with({"name": "bad name!", "value": 1}), {}, 1),
        (
            "metrics",
            "name_too_long",
            batch_with({"name": "n" * (MAX_NAME_LEN + 1), "value": 1}),
            {},
            1,
        ),
        (
            "metrics",
            "too_many_labels",
            batch_with(
                {"name": "m", "value": 1, "labels": {f"k{i}": "v" for i in range(MAX_LABELS + 1)}}
            ),
            {},
            1,
        ),
        (
            "metrics",
            "bad_label_name",
            batch_with({"name": "m", "value": 1, "labels": {"a b": "v"}}),
            {},
            1,
        ),
        (
            "metrics",
            "label_value_too_long",
            batch_with({"name": "m", "value": 1, "labels": {"k": "v" * 257}}),
            {},
            1,
        ),
        (
            "metrics",
            "non_finite",
            encode(
                MetricBatch("h", "p", [Sample("good_metric", 1.0), Sample("m", math.nan)]), MSGPACK
            ),
            {"Content-Type": MSGPACK},
            1,
        ),
        (
            "metrics",
            "ts_in_future",
            batch_with({"name": "m", "value": 1, "ts": now + 86400}),
            {},
            1,
        ),
        ("metrics", "ts_before_epoch", batch_with({"name": "m", "value": 1, "ts": -10}), {}, 1),
        (
            "metrics",
            "bad_samples",
            batch_with({"name": "bad name!", "value": 1}, {"name": "m", "value": 1, "ts": -10}),
            {},
            1,
        ),
        ("metrics", "host_too_long", batch_with(host="h" * (MAX_HOST_LEN + 1)), {}, 0),
        ("metrics", "plugin_too_long", batch_with(plugin="p" * (MAX_PLUGIN_LEN + 1)), {}, 0),
        (
            "metrics",
            "unit_too_long",
            batch_with({"name": "m", "value": 1, "unit": "u" * (MAX_UNIT_LEN + 1)}),
            {},
            1,
        ),
        ("events", "bad_name", b'{"host":"h","plugin":"p","kind":"no spaces please"}', {}, 0),
        (
            "events",
            "host_too_long",
            msgspec.json.encode({"host": "h" * (MAX_HOST_LEN + 1), "plugin": "p", "kind": "k"}),
            {},
            0,
        ),
        ("events", "invalid", b'{"host":"h","plugin":"p","kind":"k","severity":"loud"}', {}, 0),
        (
            "health",
            "ts_in_future",
            msgspec.json.encode({"host": "h", "plugin": "p", "status": "ok", "ts": now + 86400}),
            {},
            0,
        ),
        ("health", "invalid", b'{"host":"h","plugin":"p","status":"fine"}', {}, 0),
        (
            "health",
            "instance_too_long",
            msgspec.json.encode(
                {
                    "host": "h",
                    "plugin": "p",
                    "status": "ok",
                    "instance": "i" * (MAX_INSTANCE_LEN + 1),
                }
            ),
            {},
            0,
        ),
    ]


def test_every_reason_code_has_a_case() -> None:
    assert {c[1] for c in cases()} == set(REASONS)


async def test_each_malformed_message_is_dead_lettered_with_its_reason(env: Env) -> None:
    nc = await connect_nats(env.ep, "dlq-test")
    try:
        js = nc.jetstream()
        await ensure_streams(js, env.settings)
        await ensure_consumers(js, env.settings)
        subjects = env.settings.subjects
        published = cases()
        for i, (kind, _, payload, headers, _) in enumerate(published):
            subject = getattr(subjects, kind)("h", "p")
            await js.publish(subject, payload, headers={**headers, "Nats-Msg-Id": f"case-{i}"})

        async with running_ingest(env):

            async def all_dead() -> bool:
                info = await js.stream_info(subjects.dlq_stream)
                return bool(info.state.messages >= len(published))

            await wait_for(all_dead, within=60)
        dead: list[Msg] = []
        sub = await js.subscribe(
            f"{env.root}.dlq.>", stream=subjects.dlq_stream, ordered_consumer=True
        )
        for _ in range(len(published)):
            dead.append(await sub.next_msg(timeout=5))
        await sub.unsubscribe()
        good_kept = await count(env, "SELECT count(*) FROM samples")
    finally:
        await nc.close()

    got = {(m.headers or {})["Unity-Subject"] + "|" + m.data.hex(): m for m in dead}
    for kind, reason, payload, _, _ in published:
        msg = got[getattr(subjects, kind)("h", "p") + "|" + payload.hex()]
        headers = msg.headers or {}
        assert headers["Unity-Reason"] == reason, (kind, reason, headers.get("Unity-Error"))
        assert msg.subject == subjects.dlq(reason)
        assert headers["Unity-Error"], reason
    # Partly bad batches keep their good samples: one good sample from each of them.
    assert good_kept == sum(c[4] for c in published)
