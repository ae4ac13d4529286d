"""Unity's wire contract: message Structs, codecs and limits. No I/O."""

from schemas.codec import JSON, MSGPACK, DecodeError, WireMessage, decode, encode
from schemas.subjects import Subjects
from schemas.validate import Rejection, check_sample, epoch, split_batch, token
from schemas.wire import (
    WIRE_VERSION,
    Event,
    HealthReport,
    Kind,
    MetricBatch,
    Sample,
    Severity,
    Status,
)

__all__ = [
    "JSON",
    "MSGPACK",
    "WIRE_VERSION",
    "DecodeError",
    "Event",
    "HealthReport",
    "Kind",
    "MetricBatch",
    "Rejection",
    "Sample",
    "Severity",
    "Status",
    "Subjects",
    "WireMessage",
    "check_sample",
    "decode",
    "encode",
    "epoch",
    "split_batch",
    "token",
]
