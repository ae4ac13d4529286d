"""``POST /write``: Prometheus remote write 1.0 (snappy-compressed protobuf) into JetStream.

Every series of a ``WriteRequest`` becomes samples of a metric batch on
``unity.metrics.<host>.<plugin>``, published with acks like any producer's: JetStream buffers
them, ingest stores them, replay can read them again. Labels map as the query side shows them
back: ``__name__`` is the metric name; ``host`` (else the host part of ``instance``, else
``remote``), ``plugin`` (else ``remote_write``) and ``instance`` are the series' columns; the
rest are its labels. A sample is a counter when the request's metadata says so or its name ends
in ``_total``, ``_count``, ``_sum`` or ``_bucket``.

Each batch's ``Nats-Msg-Id`` is derived from the request's bytes, so a request the sender
retries (after a timeout, say) is stored once. Staleness markers are Prometheus's note that a
series ended, not samples, and are skipped; other NaN and infinite values cannot be stored,
and the answer is a 400 counting them after the rest is published.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
from collections.abc import Iterator
from typing import Any

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from nats.js import JetStreamContext
from starlette.requests import Request
from starlette.responses import Response

from unity.api.errors import ApiError
from unity.api.operation import Operation, Param
from unity.api.state import state_of
from unity.schemas import MAX_PAYLOAD_BYTES, MAX_SAMPLES, MSGPACK, Kind, MetricBatch, Sample, encode
from unity.sdk.settings import Settings

MAX_DECODED_BYTES = 64 * 1024 * 1024
CHUNK = 2000
IN_FLIGHT = 64
PUBLISH_TIMEOUT_S = 10.0
DEFAULT_HOST = "remote"
DEFAULT_PLUGIN = "remote_write"
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
COUNTER_TYPES = {1, 3, 4, 5}  # MetricMetadata: COUNTER, HISTOGRAM, GAUGEHISTOGRAM, SUMMARY
STALE_NAN = 0x7FF0000000000002


def _write_request_class() -> Any:
    """prometheus.WriteRequest from remote.proto/types.proto, built from a descriptor."""
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="unity/prometheus_remote.proto", package="unity.prometheus", syntax="proto3"
    )
    layout: dict[str, list[tuple[str, int, str]]] = {
        "Label": [("name", f.TYPE_STRING, ""), ("value", f.TYPE_STRING, "")],
        "Sample": [("value", f.TYPE_DOUBLE, ""), ("timestamp", f.TYPE_INT64, "")],
        # exemplars and native histograms are kept as bytes: counted, not decoded.
        "TimeSeries": [
            ("labels", f.TYPE_MESSAGE, "Label"),
            ("samples", f.TYPE_MESSAGE, "Sample"),
            ("exemplars", f.TYPE_BYTES, "*"),
            ("histograms", f.TYPE_BYTES, "*"),
        ],
        "MetricMetadata": [
            ("type", f.TYPE_INT32, ""),
            ("metric_family_name", f.TYPE_STRING, ""),
            ("", 0, ""),
            ("help", f.TYPE_STRING, ""),
            ("unit", f.TYPE_STRING, ""),
        ],
        "WriteRequest": [
            ("timeseries", f.TYPE_MESSAGE, "TimeSeries"),
            ("", 0, ""),
            ("metadata", f.TYPE_MESSAGE, "MetricMetadata"),
        ],
    }
    for name, fields in layout.items():
        message = file.message_type.add(name=name)
        for number, (field, kind, ref) in enumerate(fields, 1):
            if not field:
                continue  # a reserved field number
            repeated = bool(ref)
            spec = message.field.add(
                name=field,
                number=number,
                type=kind,
                label=f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL,
            )
            if ref and ref != "*":
                spec.type_name = f".unity.prometheus.{ref}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("unity.prometheus.WriteRequest")
    )


WriteRequest = _write_request_class()


def _uncompressed_length(data: bytes) -> int:
    """The length a snappy block announces in its varint header."""
    length, shift = 0, 0
    for byte in data[:10]:
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return length
        shift += 7
    raise ApiError(400, "malformed_body", "the body is not a snappy block")


def decode(body: bytes) -> Any:
    """The WriteRequest in a snappy-compressed body; 400 when it is not one."""
    if _uncompressed_length(body) > MAX_DECODED_BYTES:
        raise ApiError(
            413, "too_large", f"the request decompresses to over {MAX_DECODED_BYTES} bytes"
        )
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise ApiError(400, "malformed_body", f"the body is not snappy-compressed: {exc}") from None
    request = WriteRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise ApiError(400, "malformed_body", f"the body is not a WriteRequest: {exc}") from None
    return request


def _stale(value: float) -> bool:
    bits: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return bits == STALE_NAN


class Translation:
    """A WriteRequest as metric batches, grouped by host, plugin and instance."""

    def __init__(self, request: Any) -> None:
        counters = {m.metric_family_name for m in request.metadata if m.type in COUNTER_TYPES}
        self.groups: dict[tuple[str, str, str], list[Sample]] = {}
        self.non_finite = 0
        self.histograms = 0
        for series in request.timeseries:
            labels = {label.name: label.value for label in series.labels if label.value}
            name = labels.pop("__name__", "")
            if not name:
                raise ApiError(400, "bad_series", "a series has no __name__ label; nothing stored")
            instance = labels.pop("instance", "")
            host = labels.pop("host", "") or instance.rsplit(":", 1)[0] or DEFAULT_HOST
            plugin = labels.pop("plugin", "") or DEFAULT_PLUGIN
            family = name.removesuffix("_total")
            kind: Kind = (
                "counter"
                if name in counters or family in counters or name.endswith(COUNTER_SUFFIXES)
                else "gauge"
            )
            self.histograms += len(series.histograms)
            out = self.groups.setdefault((host, plugin, instance), [])
            for s in series.samples:
                if not math.isfinite(s.value):
                    self.non_finite += 0 if _stale(s.value) else 1
                    continue
                out.append(
                    Sample(
                        name=name, value=s.value, labels=labels, kind=kind, ts=s.timestamp / 1000
                    )
                )

    def batches(self) -> Iterator[MetricBatch]:
        for (host, plugin, instance), samples in self.groups.items():
            for i in range(0, len(samples), CHUNK):
                yield MetricBatch(host, plugin, samples[i : i + CHUNK], instance=instance)


def _sized(batch: MetricBatch) -> Iterator[bytes]:
    """The batch encoded, split in halves until each part fits a message."""
    payload = encode(batch, MSGPACK)
    if len(payload) <= MAX_PAYLOAD_BYTES and len(batch.samples) <= MAX_SAMPLES:
        yield payload
        return
    half = len(batch.samples) // 2
    if half == 0:
        yield payload  # one oversized sample: ingest sends it to the DLQ with the reason
        return
    for part in (batch.samples[:half], batch.samples[half:]):
        yield from _sized(MetricBatch(batch.host, batch.plugin, part, instance=batch.instance))


async def publish(js: JetStreamContext, settings: Settings, body: bytes, request: Any) -> int:
    """Publish the request's samples; returns how many were published."""
    digest = hashlib.sha256(body).hexdigest()[:24]
    translation = Translation(request)
    messages: list[tuple[str, bytes, str]] = []
    total = 0
    for batch in translation.batches():
        subject = settings.subjects.metrics(batch.host, batch.plugin)
        for part in _sized(batch):
            msg_id = f"{batch.host}:{batch.plugin}:{batch.instance}:rw-{digest}-{len(messages)}"
            messages.append((subject, part, msg_id))
        total += len(batch.samples)
    for i in range(0, len(messages), IN_FLIGHT):
        await asyncio.gather(
            *(
                js.publish(
                    subject,
                    payload,
                    timeout=PUBLISH_TIMEOUT_S,
                    headers={"Nats-Msg-Id": msg_id, "Content-Type": MSGPACK},
                )
                for subject, payload, msg_id in messages[i : i + IN_FLIGHT]
            )
        )
    problems = []
    if translation.non_finite:
        problems.append(f"{translation.non_finite} NaN or infinite samples")
    if translation.histograms:
        problems.append(f"{translation.histograms} native histogram samples")
    if problems:
        raise ApiError(
            400,
            "not_stored",
            f"{total} samples published; not stored (Unity keeps finite floats only): "
            + ", ".join(problems),
        )
    return total


async def write(request: Request) -> Response:
    st = state_of(request)
    encoding = request.headers.get("content-encoding", "snappy").lower()
    if encoding != "snappy":
        raise ApiError(400, "unsupported_encoding", f"Content-Encoding {encoding!r}; use snappy")
    body = await request.body()
    await publish(st.js, st.settings, body, decode(body))
    return Response(status_code=204)


OPERATIONS = [
    Operation(
        "POST",
        "/write",
        write,
        "Prometheus remote write 1.0 (snappy-compressed protobuf WriteRequest) into JetStream",
        "data",
        "write",
        params=(
            Param("Content-Encoding", "header", {"type": "string", "enum": ["snappy"]}, "snappy"),
        ),
        status=204,
    ),
]
