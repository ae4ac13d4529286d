"""Unity's wire contract: message Structs, codecs, limits and subject names. No I/O.

Rules for evolving the contract are in ``schemas/README.md``: it only grows.
"""

from schemas.codec import (
    JSON,
    MESSAGE_TYPES,
    MSGPACK,
    DecodeError,
    WireMessage,
    decode,
    encode,
    media_type,
)
from schemas.plugin import MetricInfo, PluginInfo, PluginSettings, settings_key
from schemas.subjects import Subjects
from schemas.validate import (
    MAX_FUTURE_S,
    MAX_LABEL_VALUE_LEN,
    MAX_LABELS,
    MAX_NAME_LEN,
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES,
    REASONS,
    Rejection,
    check_message,
    check_name,
    check_sample,
    check_ts,
    epoch,
    split_batch,
    token,
)
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
    "MAX_FUTURE_S",
    "MAX_LABELS",
    "MAX_LABEL_VALUE_LEN",
    "MAX_NAME_LEN",
    "MAX_PAYLOAD_BYTES",
    "MAX_SAMPLES",
    "MESSAGE_TYPES",
    "MSGPACK",
    "REASONS",
    "WIRE_VERSION",
    "DecodeError",
    "Event",
    "HealthReport",
    "Kind",
    "MetricBatch",
    "MetricInfo",
    "PluginInfo",
    "PluginSettings",
    "Rejection",
    "Sample",
    "Severity",
    "Status",
    "Subjects",
    "WireMessage",
    "check_message",
    "check_name",
    "check_sample",
    "check_ts",
    "decode",
    "encode",
    "epoch",
    "media_type",
    "settings_key",
    "split_batch",
    "token",
]
