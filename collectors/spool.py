"""The outbox: every message the collector publishes, kept in order until JetStream acks it.

Messages go to memory while NATS takes them. On the first failed publish, and whenever the
collector stops with messages pending, memory spills to a disk spool (when one is configured);
from then on new messages append to disk behind the spilled ones until the spool is drained, so
the order never changes and a collector restart loses nothing. Both stores are bounded: past the
bound the oldest message is dropped and counted.

A disk message is one file ``<seq>.msg``: a JSON header line (subject, Msg-Id, content type),
then the encoded payload, exactly the bytes first built, so timestamps and Msg-Ids survive.
Files are written to a temp name and renamed, so a crash leaves whole messages or none.
"""

from __future__ import annotations

import collections
import fcntl
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec

log = logging.getLogger(__name__)

_SUFFIX = ".msg"


class SpoolError(OSError):
    """The disk spool cannot be used (folder not writable, file unreadable)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message ready for JetStream: subject, encoded bytes, Msg-Id, content type."""

    subject: str
    payload: bytes
    msg_id: str
    content_type: str

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.subject) + len(self.msg_id)


class _Header(msgspec.Struct, frozen=True):
    subject: str
    msg_id: str
    content_type: str


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    path: Path
    size: int


class DiskSpool:
    """A FIFO of message files in one folder, bounded in bytes; reopens what a previous run left."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("the spool needs a positive max_bytes")
        self.folder = folder
        self.max_bytes = max_bytes
        self._entries: collections.deque[_Entry] = collections.deque()
        self._bytes = 0
        self._next_seq = 0
        self._head: tuple[_Entry, Message] | None = None
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(_Header)
        self._lock: BinaryIO | None = None

    def open(self) -> None:
        """Take the folder (one collector per spool) and index what a previous run left."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock = open(self.folder / ".lock", "wb")  # noqa: SIM115 - held until close
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise SpoolError(f"spool folder {self.folder} is in use by another collector") from None
        except OSError as exc:
            raise SpoolError(f"spool folder {self.folder} is not usable: {exc}") from exc
        try:
            names = sorted(p.name for p in self.folder.iterdir() if p.name.endswith(_SUFFIX))
        except OSError as exc:
            raise SpoolError(f"spool folder {self.folder} is not usable: {exc}") from exc
        for stale in self.folder.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        for name in names:
            path = self.folder / name
            entry = _Entry(int(name[: -len(_SUFFIX)]), path, path.stat().st_size)
            self._entries.append(entry)
            self._bytes += entry.size
        if self._entries:
            self._next_seq = self._entries[-1].seq + 1
            log.info("spool %s holds %d message(s) from a previous run", self.folder, len(self))

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def append(self, message: Message) -> int:
        """Write ``message`` behind the others; returns how many old ones were dropped for room."""
        header = self._encoder.encode(
            _Header(message.subject, message.msg_id, message.content_type)
        )
        data = header + b"\n" + message.payload
        seq = self._next_seq
        self._next_seq += 1
        path = self.folder / f"{seq:020d}{_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise SpoolError(f"cannot write spool file {path}: {exc}") from exc
        self._entries.append(_Entry(seq, path, len(data)))
        self._bytes += len(data)
        dropped = 0
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            self._remove_oldest()
            dropped += 1
        return dropped

    def head(self) -> Message | None:
        if not self._entries:
            return None
        entry = self._entries[0]
        if self._head is None or self._head[0] is not entry:
            try:
                raw = entry.path.read_bytes()
            except OSError as exc:
                raise SpoolError(f"cannot read spool file {entry.path}: {exc}") from exc
            line, _, payload = raw.partition(b"\n")
            header = self._decoder.decode(line)
            self._head = (
                entry,
                Message(header.subject, payload, header.msg_id, header.content_type),
            )
        return self._head[1]

    def pop(self, message: Message) -> None:
        """Remove the head if it is ``message`` (it may have been dropped for room meanwhile)."""
        if self._entries and self._head is not None and self._head[1] is message:
            self._remove_oldest()

    def _remove_oldest(self) -> None:
        entry = self._entries.popleft()
        self._bytes -= entry.size
        entry.path.unlink(missing_ok=True)
        if self._head is not None and self._head[0] is entry:
            self._head = None


class Outbox:
    """Ordered, bounded messages waiting for JetStream: memory first, disk when NATS is away."""

    def __init__(self, max_messages: int, disk: DiskSpool | None = None) -> None:
        if max_messages < 1:
            raise ValueError("the outbox needs room for at least one message")
        self._memory: collections.deque[Message] = collections.deque()
        self._max_messages = max_messages
        self._memory_bytes = 0
        self.disk = disk
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._memory) + (len(self.disk) if self.disk else 0)

    @property
    def bytes(self) -> int:
        return self._memory_bytes + (self.disk.bytes if self.disk else 0)

    @property
    def on_disk(self) -> bool:
        return self.disk is not None and len(self.disk) > 0

    def append(self, message: Message) -> None:
        if self.on_disk:
            assert self.disk is not None
            self._count_dropped(self.disk.append(message))
            return
        self._memory.append(message)
        self._memory_bytes += message.size
        if len(self._memory) > self._max_messages:
            old = self._memory.popleft()
            self._memory_bytes -= old.size
            self._count_dropped(1)

    def head(self) -> Message | None:
        # Memory holds only messages older than anything on disk (see spill), so it goes first.
        if self._memory:
            return self._memory[0]
        return self.disk.head() if self.disk else None

    def window(self, limit: int) -> list[Message]:
        """Up to ``limit`` oldest messages, in order: those in memory, else the disk's head."""
        if self._memory:
            return list(itertools.islice(self._memory, limit))
        head = self.disk.head() if self.disk else None
        return [] if head is None else [head]

    def pop(self, message: Message) -> None:
        if self._memory and self._memory[0] is message:
            self._memory.popleft()
            self._memory_bytes -= message.size
        elif self.disk is not None:
            self.disk.pop(message)

    def spill(self) -> None:
        """Move memory to disk (NATS unreachable, or stopping), keeping the order."""
        if self.disk is None or not self._memory:
            return
        while self._memory:
            message = self._memory.popleft()
            self._count_dropped(self.disk.append(message))
        self._memory_bytes = 0

    def _count_dropped(self, count: int) -> None:
        if count:
            self.dropped += count
            log.warning("outbox full: dropped %d oldest message(s), %d in all", count, self.dropped)
