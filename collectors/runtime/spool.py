"""The outbox: every message the collector publishes, kept in order until JetStream acks it.

Messages go to memory. They move to a disk spool (when one is configured) while NATS is away,
when memory passes its bound (NATS connected but slow), and when the collector stops with
messages pending. Everything on disk is older than everything in memory, and disk is sent first,
so the order never changes and a collector restart loses nothing. Both stores are bounded: past
the bound the oldest message is dropped and counted with its reason.

File I/O never runs on the event loop: the spool is used from one thread of its own, one call
at a time (the sender is the only caller), so its calls keep their order.

A disk message is one file ``<seq>.msg``: a JSON header line (subject, Msg-Id, content type),
then the encoded payload, exactly the bytes first built, so timestamps and Msg-Ids survive.
Files are written to a temp name and renamed, so a crash leaves whole messages or none. A file
that cannot be decoded is renamed to ``<seq>.bad`` and counted; it never blocks the rest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import msgspec

log = logging.getLogger(__name__)

T = TypeVar("T")

_SUFFIX = ".msg"
_BAD_SUFFIX = ".bad"
# With a disk spool, memory may hold this many times its bound while the sender is busy
# (waiting for acks) before the oldest is dropped; the sender spills it first.
_SPILL_SLACK = 2

BUFFER_FULL = "buffer full"
SPOOL_FULL = "spool full"
SPOOL_CORRUPT = "spool file corrupt"
SPOOL_MISSING = "spool file missing"
SPOOL_UNREADABLE = "spool file unreadable"


class SpoolError(OSError):
    """The disk spool cannot be used (folder not writable, in use by another collector)."""


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
    """A FIFO of message files in one folder, bounded in bytes; reopens what a previous run left.

    Every method does file I/O: call them from one thread, one at a time (``Outbox`` does).
    Messages lost on disk (dropped for room, unreadable, corrupt) are tallied in ``losses``.
    """

    def __init__(self, folder: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("the spool needs a positive max_bytes")
        self.folder = folder
        self.max_bytes = max_bytes
        self.losses: collections.Counter[str] = collections.Counter()
        self._entries: collections.deque[_Entry] = collections.deque()
        self._bytes = 0
        self._next_seq = 0
        self._loaded: dict[int, Message] = {}
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(_Header)
        self._lock: BinaryIO | None = None

    def open(self) -> None:
        """Take the folder (one collector per spool) and index what a previous run left."""
        self._take_folder()
        try:
            names = sorted(p.name for p in self.folder.iterdir() if p.name.endswith(_SUFFIX))
            for stale in self.folder.glob("*.tmp"):
                stale.unlink(missing_ok=True)
            for name in names:
                stem = name[: -len(_SUFFIX)]
                if not stem.isdigit():
                    log.warning("spool %s: %s is not a spool file; left alone", self.folder, name)
                    continue
                path = self.folder / name
                entry = _Entry(int(stem), path, path.stat().st_size)
                self._entries.append(entry)
                self._bytes += entry.size
        except OSError as exc:
            raise SpoolError(f"spool folder {self.folder} is not usable: {exc}") from exc
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
    def nbytes(self) -> int:
        return self._bytes

    def append(self, messages: Sequence[Message]) -> tuple[int, SpoolError | None]:
        """Write ``messages`` behind the others, in order, until one fails.

        Returns how many were written and the error that stopped the rest (None if none did).
        Old messages dropped for room are counted in ``losses``.
        """
        for written, message in enumerate(messages):
            header = self._encoder.encode(
                _Header(message.subject, message.msg_id, message.content_type)
            )
            data = header + b"\n" + message.payload
            path = self.folder / f"{self._next_seq:020d}{_SUFFIX}"
            try:
                self._write(path, data)
            except OSError as exc:
                error = exc if isinstance(exc, SpoolError) else SpoolError(str(exc))
                return written, error
            self._entries.append(_Entry(self._next_seq, path, len(data)))
            self._next_seq += 1
            self._bytes += len(data)
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                self._remove_oldest()
                self.losses[SPOOL_FULL] += 1
        return len(messages), None

    def window(self, limit: int) -> list[Message]:
        """Up to ``limit`` oldest messages, in order; unreadable files are set aside and counted."""
        found: list[Message] = []
        missing = self.losses[SPOOL_MISSING]
        index = 0
        while len(found) < limit and index < len(self._entries):
            entry = self._entries[index]
            message = self._loaded.get(entry.seq)
            if message is None:
                message = self._read(entry)
            if message is None:
                del self._entries[index]
                self._bytes -= entry.size
                continue
            self._loaded[entry.seq] = message
            found.append(message)
            index += 1
        if gone := self.losses[SPOOL_MISSING] - missing:
            log.warning("%d spool file(s) in %s are gone: messages lost", gone, self.folder)
        return found

    def pop(self, messages: Sequence[Message]) -> None:
        """Remove the oldest files while they hold ``messages`` (some may be gone for room)."""
        for message in messages:
            if not self._entries or self._loaded.get(self._entries[0].seq) is not message:
                return
            self._remove_oldest()

    def _take_folder(self) -> None:
        self.close()
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock = open(self.folder / ".lock", "wb")  # noqa: SIM115 - held until close
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise SpoolError(f"spool folder {self.folder} is in use by another collector") from None
        except OSError as exc:
            self.close()
            raise SpoolError(f"spool folder {self.folder} is not usable: {exc}") from exc

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_suffix(".tmp")
        try:
            try:
                tmp.write_bytes(data)
            except FileNotFoundError:
                # The folder was removed under us: make it again rather than lose what follows.
                log.warning("spool folder %s disappeared; making it again", self.folder)
                self._take_folder()
                tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise

    def _read(self, entry: _Entry) -> Message | None:
        try:
            raw = entry.path.read_bytes()
        except FileNotFoundError:
            self.losses[SPOOL_MISSING] += 1
            return None
        except OSError as exc:
            log.warning("spool file %s is unreadable (%s): set aside", entry.path, exc)
            self._set_aside(entry)
            self.losses[SPOOL_UNREADABLE] += 1
            return None
        line, newline, payload = raw.partition(b"\n")
        try:
            if not newline:
                raise msgspec.DecodeError("no header line")
            header = self._decoder.decode(line)
        except msgspec.DecodeError as exc:
            log.warning("spool file %s is corrupt (%s): set aside", entry.path, exc)
            self._set_aside(entry)
            self.losses[SPOOL_CORRUPT] += 1
            return None
        return Message(header.subject, payload, header.msg_id, header.content_type)

    @staticmethod
    def _set_aside(entry: _Entry) -> None:
        # Kept for a human to look at; open() indexes only *.msg, so it is never sent.
        with contextlib.suppress(OSError):
            entry.path.rename(entry.path.with_suffix(_BAD_SUFFIX))

    def _remove_oldest(self) -> None:
        entry = self._entries.popleft()
        self._bytes -= entry.size
        self._loaded.pop(entry.seq, None)
        try:
            entry.path.unlink(missing_ok=True)
        except OSError as exc:
            # Sent (or dropped) already; a file left behind is resent after a restart, which
            # the stream's duplicate window turns into a no-op.
            log.warning("cannot remove spool file %s: %s", entry.path, exc)


class Outbox:
    """Ordered, bounded messages waiting for JetStream: disk (oldest) first, then memory.

    ``put`` never does I/O. The sender task is the only caller of the async methods, one at a
    time; disk calls run in the outbox's own thread.
    """

    def __init__(self, max_messages: int, disk: DiskSpool | None = None) -> None:
        if max_messages < 1:
            raise ValueError("the outbox needs room for at least one message")
        self._memory: collections.deque[Message] = collections.deque()
        self._memory_bytes = 0
        self._max_messages = max_messages
        # Messages on their way to disk: out of memory, not yet in the spool's index.
        self._moving: list[Message] = []
        self.disk = disk
        self.dropped = 0
        self._unreported: collections.Counter[str] = collections.Counter()
        self._window_on_disk = False
        self._spool_failing = False
        self._io: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self._memory) + len(self._moving) + (len(self.disk) if self.disk else 0)

    @property
    def nbytes(self) -> int:
        moving = sum(m.size for m in self._moving)
        return self._memory_bytes + moving + (self.disk.nbytes if self.disk else 0)

    @property
    def in_memory(self) -> tuple[Message, ...]:
        return tuple(self._memory)

    @property
    def on_disk(self) -> bool:
        return self.disk is not None and len(self.disk) > 0

    @property
    def over_bound(self) -> bool:
        """Memory is past its bound and a spool could take the overflow."""
        return self.disk is not None and len(self._memory) > self._max_messages

    def put(self, message: Message) -> None:
        self._memory.append(message)
        self._memory_bytes += message.size
        limit = self._max_messages * (_SPILL_SLACK if self.disk is not None else 1)
        self._trim(limit)

    async def open(self) -> None:
        if self.disk is not None:
            await self._call(self.disk.open)

    async def close(self) -> None:
        if self._io is None:
            return  # the spool was never opened nor used
        if self.disk is not None:
            await self._call(self.disk.close)
        self._io.shutdown(wait=True)
        self._io = None

    async def window(self, limit: int) -> list[Message]:
        """Up to ``limit`` oldest messages, in order: from disk while it holds any, else memory."""
        if self.disk is not None and len(self.disk):
            found = await self._call(self.disk.window, limit)
            self._count_disk_losses()
            if found:
                self._window_on_disk = True
                return found
        self._window_on_disk = False
        return list(itertools.islice(self._memory, limit))

    async def pop(self, messages: Sequence[Message]) -> None:
        """Remove ``messages``, the acked start of the last window."""
        if not messages:
            return
        if self._window_on_disk:
            assert self.disk is not None
            await self._call(self.disk.pop, messages)
            return
        for message in messages:
            if not self._memory or self._memory[0] is not message:
                return  # dropped for room while it was in flight
            self._memory.popleft()
            self._memory_bytes -= message.size

    async def discard(self, message: Message, reason: str) -> None:
        """Remove a message no retry can send, counting it as dropped."""
        await self.pop([message])
        self._drop(1, reason)

    async def spill(self) -> None:
        """Move memory to disk behind what is there, keeping the order.

        A message the disk does not take stays in memory, first in line, and is tried again
        at the next spill.
        """
        if self.disk is None or not self._memory:
            return
        self._moving = list(self._memory)
        self._memory.clear()
        self._memory_bytes = 0
        written, error = 0, None
        try:
            written, error = await self._call(self.disk.append, self._moving)
        finally:
            unwritten = self._moving[written:]
            self._moving = []
            self._memory.extendleft(reversed(unwritten))
            self._memory_bytes += sum(m.size for m in unwritten)
            self._count_disk_losses()
        if error is not None:
            if not self._spool_failing:
                log.error("disk spool not writable, keeping messages in memory: %s", error)
            self._spool_failing = True
            self._trim(self._max_messages * _SPILL_SLACK)
        elif self._spool_failing:
            log.info("disk spool writable again")
            self._spool_failing = False

    def take_drops(self) -> collections.Counter[str]:
        """Messages dropped since the last call, by reason."""
        drops, self._unreported = self._unreported, collections.Counter()
        return drops

    def _trim(self, limit: int) -> None:
        reason = f"{BUFFER_FULL} (spool not writable)" if self._spool_failing else BUFFER_FULL
        dropped = 0
        while len(self._memory) > limit:
            old = self._memory.popleft()
            self._memory_bytes -= old.size
            dropped += 1
        self._drop(dropped, reason)

    def _count_disk_losses(self) -> None:
        assert self.disk is not None
        for reason, count in self.disk.losses.items():
            self._drop(count, reason)
        self.disk.losses.clear()

    def _drop(self, count: int, reason: str) -> None:
        if count:
            self.dropped += count
            self._unreported[reason] += count
            log.warning("dropped %d message(s) (%s), %d in all", count, reason, self.dropped)

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unity-spool")
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)
