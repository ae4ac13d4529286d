"""The dead-letter stream: rejected input with its original subject, bytes and reason.

An entry is published to ``<root>.dlq.<reason>`` with headers ``Unity-Reason``, ``Unity-Error``,
``Unity-Subject``, ``Unity-Stream-Seq`` and the original's ``Content-Type`` as it was; its
``Nats-Msg-Id`` is derived from the original's stream sequence, so a redelivered bad message is
dead-lettered once. Re-driving publishes the original bytes, with that ``Content-Type``, to the
original subject again and then removes the entry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from unity.schemas import Subjects

REASON = "Unity-Reason"
ERROR = "Unity-Error"
SUBJECT = "Unity-Subject"
STREAM_SEQ = "Unity-Stream-Seq"
CONTENT_TYPE = "Content-Type"


class DeadLetterError(LookupError):
    """A dead-letter entry is missing or cannot be re-driven."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    seq: int
    time: datetime | None
    reason: str
    error: str
    subject: str
    data: bytes
    headers: dict[str, str]


async def dead_letter(
    js: JetStreamContext, subjects: Subjects, msg: Msg, reason: str, message: str
) -> None:
    """Store ``msg`` in the DLQ; returns once JetStream has acknowledged the copy."""
    meta = msg.metadata
    stored = Stored(meta.stream, meta.sequence.stream, msg.subject, msg.data, msg.headers)
    await dead_letter_stored(js, subjects, stored, reason, message)


@dataclass(frozen=True, slots=True)
class Stored:
    """A message as its stream holds it (a delivery, or read back by sequence)."""

    stream: str
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None


async def dead_letter_stored(
    js: JetStreamContext, subjects: Subjects, msg: Stored, reason: str, message: str
) -> None:
    """Store ``msg`` in the DLQ, once per original (a second copy is a duplicate)."""
    headers = {
        REASON: reason,
        ERROR: message.replace("\r", " ").replace("\n", " ")[:2000],
        SUBJECT: msg.subject,
        STREAM_SEQ: str(msg.seq),
        "Nats-Msg-Id": f"dlq:{msg.stream}:{msg.seq}",
    }
    # As is: any alias of MessagePack (or an unsupported type) must decode the same on re-drive.
    content_type = (msg.headers or {}).get(CONTENT_TYPE)
    if content_type:
        headers[CONTENT_TYPE] = content_type
    await js.publish(subjects.dlq(reason), msg.data, headers=headers)


async def get(js: JetStreamContext, subjects: Subjects, seq: int) -> DeadLetter:
    try:
        raw = await js.get_msg(subjects.dlq_stream, seq)
    except NotFoundError as exc:
        raise DeadLetterError(f"no dead letter with sequence {seq}") from exc
    return _entry(raw.seq or seq, raw.time, raw.headers or {}, raw.data or b"")


def _entry(seq: int, time: datetime | None, headers: dict[str, str], data: bytes) -> DeadLetter:
    return DeadLetter(
        seq=seq,
        time=time,
        reason=headers.get(REASON, ""),
        error=headers.get(ERROR, ""),
        subject=headers.get(SUBJECT, ""),
        data=data,
        headers=dict(headers),
    )


async def entries(
    js: JetStreamContext, subjects: Subjects, reason: str | None = None, limit: int = 100
) -> AsyncIterator[DeadLetter]:
    """The oldest ``limit`` entries, optionally of one reason."""
    subject = subjects.dlq(reason) if reason else f"{subjects.root}.dlq.>"
    seq = 0
    for _ in range(limit):
        try:
            raw = await js.get_msg(subjects.dlq_stream, seq + 1, subject=subject, next=True)
        except NotFoundError:
            return
        assert raw.seq is not None
        seq = raw.seq
        yield _entry(seq, raw.time, raw.headers or {}, raw.data or b"")


async def redrive(js: JetStreamContext, subjects: Subjects, seq: int) -> str:
    """Publish entry ``seq`` to its original subject again, then delete it; returns the subject."""
    entry = await get(js, subjects, seq)
    if not entry.subject.startswith(f"{subjects.root}."):
        raise DeadLetterError(f"dead letter {seq} has no original subject under {subjects.root}")
    headers = {"Nats-Msg-Id": f"redrive:{subjects.dlq_stream}:{seq}"}
    content_type = entry.headers.get(CONTENT_TYPE)
    if content_type:
        headers[CONTENT_TYPE] = content_type
    await js.publish(entry.subject, entry.data, headers=headers)
    await js.delete_msg(subjects.dlq_stream, seq)
    return entry.subject
