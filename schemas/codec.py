"""Encoding and decoding of wire messages: JSON by default, MessagePack on request."""

from __future__ import annotations

from typing import Final, TypeVar

import msgspec

from schemas.wire import Event, HealthReport, MetricBatch

MSGPACK: Final = "application/msgpack"
JSON: Final = "application/json"

WireMessage = MetricBatch | HealthReport | Event
T = TypeVar("T", MetricBatch, HealthReport, Event)

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_json_decoders = {t: msgspec.json.Decoder(t) for t in (MetricBatch, HealthReport, Event)}
_msgpack_decoders = {t: msgspec.msgpack.Decoder(t) for t in (MetricBatch, HealthReport, Event)}


class DecodeError(ValueError):
    """A message could not be decoded; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def encode(msg: WireMessage, content_type: str = JSON) -> bytes:
    """Encode a wire message as JSON (default) or MessagePack."""
    if content_type == MSGPACK:
        return _msgpack_encoder.encode(msg)
    return _json_encoder.encode(msg)


def decode(data: bytes, type_: type[T], content_type: str | None = None) -> T:
    """Decode ``data`` as ``type_``; raises DecodeError with a reason on bad input."""
    decoders = _msgpack_decoders if content_type == MSGPACK else _json_decoders
    try:
        return decoders[type_].decode(data)  # type: ignore[return-value]
    except msgspec.ValidationError as exc:
        raise DecodeError("invalid", f"invalid {type_.__name__}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise DecodeError("malformed", f"malformed {type_.__name__}: {exc}") from exc
