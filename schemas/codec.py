"""Encoding and decoding of wire messages: JSON by default, MessagePack on request.

The ``Content-Type`` header picks the format. ``decode`` enforces the payload-size limit and the
per-message limits of health reports and events; per-sample limits of a batch are checked by
``split_batch`` so the good samples of a batch can be kept.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

from unity.schemas.plugin import PluginInfo, PluginSettings
from unity.schemas.validate import MAX_PAYLOAD_BYTES, check_message
from unity.schemas.wire import Event, HealthReport, MetricBatch

__all__ = [
    "JSON",
    "MESSAGE_TYPES",
    "MSGPACK",
    "MSGPACK_ALIASES",
    "DecodeError",
    "WireMessage",
    "decode",
    "encode",
    "media_type",
]

MSGPACK: Final = "application/msgpack"
JSON: Final = "application/json"
MSGPACK_ALIASES: Final = frozenset({MSGPACK, "application/x-msgpack", "application/vnd.msgpack"})

WireMessage = MetricBatch | HealthReport | Event | PluginInfo | PluginSettings
MESSAGE_TYPES: Final = (MetricBatch, HealthReport, Event, PluginInfo, PluginSettings)
T = TypeVar("T", MetricBatch, HealthReport, Event, PluginInfo, PluginSettings)

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_json_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in MESSAGE_TYPES
}
_msgpack_decoders: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {
    t: msgspec.msgpack.Decoder(t) for t in MESSAGE_TYPES
}


class DecodeError(ValueError):
    """A message could not be decoded or broke a limit.

    Attributes:
        reason: Short snake_case code (see ``schemas.validate.REASONS``), the DLQ subject token.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def media_type(content_type: str | None) -> str:
    """Normalise a ``Content-Type`` header to JSON or MSGPACK; raise DecodeError otherwise."""
    if not content_type:
        return JSON
    base = content_type.split(";", 1)[0].strip().lower()
    if base in MSGPACK_ALIASES:
        return MSGPACK
    if base == JSON:
        return JSON
    raise DecodeError(
        "unsupported_content_type", f"Content-Type {content_type[:80]!r} is not JSON or MessagePack"
    )


def encode(msg: WireMessage, content_type: str = JSON) -> bytes:
    """Encode a wire message as JSON (default) or MessagePack (``content_type=MSGPACK``)."""
    if content_type == MSGPACK:
        return _msgpack_encoder.encode(msg)
    if content_type == JSON:
        return _json_encoder.encode(msg)
    raise ValueError(f"cannot encode as {content_type!r}: use JSON or MSGPACK")


def decode(
    data: bytes,
    type_: type[T],
    content_type: str | None = None,
    *,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    now: float | None = None,
) -> T:
    """Decode ``data`` as ``type_`` and check its message-level limits.

    Args:
        data: The encoded message.
        type_: The expected message type.
        content_type: The ``Content-Type`` header; JSON when missing.
        max_bytes: Largest accepted payload.
        now: The receiver's clock for timestamp checks (default: the current time).

    Raises:
        DecodeError: with ``reason`` ``too_large``, ``unsupported_content_type``, ``malformed``
            (not JSON/MessagePack), ``invalid`` (wrong types or missing fields), or a limit's code.
    """
    if len(data) > max_bytes:
        raise DecodeError(
            "too_large", f"{type_.__name__} is {len(data)} bytes, the limit is {max_bytes}"
        )
    decoders = _msgpack_decoders if media_type(content_type) == MSGPACK else _json_decoders
    try:
        msg: T = decoders[type_].decode(data)
    except msgspec.ValidationError as exc:
        raise DecodeError("invalid", f"invalid {type_.__name__}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise DecodeError("malformed", f"malformed {type_.__name__}: {exc}") from exc
    if isinstance(msg, HealthReport | Event):
        problem = check_message(msg, now)
        if problem is not None:
            raise DecodeError(problem[0], f"{type_.__name__}: {problem[1]}")
    return msg
