"""Following log files and the journal from where the last run stopped, across restarts.

A file's position is kept with its identity (device and inode) and a fingerprint of its first
bytes, in a JSON state file written atomically after each run, so that:

- a restart continues where the previous process stopped (nothing read twice, nothing skipped);
- logrotate's rename (``create``) is noticed by the inode changing: the rest of the old file is
  read from its new name (``app.log.1``, ``app.log-20261204``) before the new file from 0;
- ``copytruncate`` is noticed by the size dropping below the position, or the first bytes
  changing (the file grew past the old position before this run): read again from 0;
- a file replaced while a run reads it is read through the one descriptor opened first, whose
  identity is the one stored;
- a line still being written (no newline yet) is left for the next run.

Reads are bytes with positions counted in bytes (``tell()`` on a text file iterated line by
line is not a position), decoded per line with replacement characters for bad UTF-8.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from unity.collectors import command

__all__ = ["Chunk", "Journal", "Offsets", "Position", "default_state_dir", "message", "read_new"]

HEAD = 256  # bytes fingerprinted at a file's start


class Position(msgspec.Struct, frozen=True):
    dev: int
    ino: int
    offset: int
    head_len: int = 0
    head: str = ""


class _State(msgspec.Struct):
    positions: dict[str, Position] = {}
    cursors: dict[str, str] = {}
    counters: dict[str, float] = {}


def default_state_dir() -> Path:
    """systemd's StateDirectory when set, else ``$XDG_STATE_HOME/unity`` (~/.local/state)."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "unity"


class Offsets:
    """File positions, journal cursors and running counters of one plugin instance."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.note = ""
        try:
            self._state = msgspec.json.decode(path.read_bytes(), type=_State)
        except FileNotFoundError:
            self._state = _State()
        except (OSError, msgspec.DecodeError) as exc:
            # A damaged state file costs the positions, not the plugin: start again at the ends.
            self.note = f"state file {path} unreadable ({type(exc).__name__}), positions reset"
            self._state = _State()

    @property
    def positions(self) -> dict[str, Position]:
        return self._state.positions

    @property
    def cursors(self) -> dict[str, str]:
        return self._state.cursors

    @property
    def counters(self) -> dict[str, float]:
        return self._state.counters

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_bytes(msgspec.json.encode(self._state))
        os.replace(tmp, self.path)


@dataclass
class Chunk:
    """Whole lines read in one run and what happened to the file since the last."""

    lines: list[str] = field(default_factory=list)
    position: Position | None = None
    rotated: bool = False
    truncated: bool = False
    problem: str = ""  # a one-line reason when lines may have been missed


def _fingerprint(fd: int, size: int) -> tuple[int, str]:
    length = min(size, HEAD)
    return length, hashlib.sha256(os.pread(fd, length, 0)).hexdigest()


def _same_head(fd: int, pos: Position) -> bool:
    if pos.head_len == 0:
        return True
    return hashlib.sha256(os.pread(fd, pos.head_len, 0)).hexdigest() == pos.head


def _line_start(fd: int, size: int) -> int:
    """Where the last whole line ends: starting a file at its end must not start mid-line."""
    tail = os.pread(fd, min(size, 64 * 1024), max(0, size - 64 * 1024))
    cut = tail.rfind(b"\n")
    return size if cut < 0 and size > len(tail) else size - len(tail) + cut + 1


def _read_lines(fd: int, start: int, max_bytes: int) -> tuple[list[str], int]:
    """Whole lines from ``start``; returns them and the offset after the last newline."""
    data = os.pread(fd, max_bytes, start)
    end = data.rfind(b"\n") + 1
    if end == 0:
        # No newline: a line being written, unless it alone fills the budget.
        if len(data) < max_bytes:
            return [], start
        end = len(data)
    lines = data[:end].decode(errors="replace").splitlines()
    return lines, start + end


def _is_copy(candidate: Path, pos: Position, *, by_content: bool) -> bool:
    try:
        st = candidate.stat()
        if not by_content:
            return (st.st_dev, st.st_ino) == (pos.dev, pos.ino)
        if st.st_size < pos.offset or not pos.head_len:
            return False
        with candidate.open("rb") as fh:
            return hashlib.sha256(fh.read(pos.head_len)).hexdigest() == pos.head
    except OSError:
        return False


def _rotated_copy(path: Path, pos: Position, *, by_content: bool) -> Path | None:
    """The rotated file next to ``path`` that holds ``pos``: its inode after a rename, or the
    same first bytes after ``copytruncate`` (the newest such copy: names sort oldest last)."""
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return None
    for candidate in sorted(siblings):
        named = candidate.name.startswith(path.name) and candidate != path
        if named and _is_copy(candidate, pos, by_content=by_content):
            return candidate
    return None


def _rest_of_rotated(
    path: Path, pos: Position, max_bytes: int, *, by_content: bool = False
) -> tuple[list[str], str]:
    old = _rotated_copy(path, pos, by_content=by_content)
    if old is None:
        how = "truncated" if by_content else "rotated"
        return [], f"{path} {how} and its old copy is gone (compressed or removed)"
    try:
        fd = os.open(old, os.O_RDONLY)
    except OSError as exc:
        return [], f"{old}: {exc.strerror}"
    try:
        data = os.pread(fd, max_bytes, pos.offset)
    finally:
        os.close(fd)
    # The old file is complete: its last line counts even without a newline.
    return data.decode(errors="replace").splitlines(), ""


def read_new(path: str | Path, pos: Position | None, *, from_start: bool, max_bytes: int) -> Chunk:
    """The whole lines added to ``path`` since ``pos`` (None: the first run for this file).

    On a first run ``from_start`` reads the file from its beginning, else from its end.

    Raises:
        OSError: the file cannot be opened (missing, no permission); its remainder before a
            rotation is still returned when the file was renamed away and not yet recreated.
    """
    path = Path(path)
    chunk = Chunk()
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if pos is None:
            raise
        # Renamed away and not yet recreated: read the rest of the old copy once.
        lines, problem = _rest_of_rotated(path, pos, max_bytes)
        if problem:
            raise
        return Chunk(lines, Position(0, 0, 0), rotated=True)
    try:
        st = os.fstat(fd)
        if pos is None:
            start = 0 if from_start else _line_start(fd, st.st_size)
        elif (st.st_dev, st.st_ino) != (pos.dev, pos.ino):
            chunk.rotated = True
            if pos.ino:
                chunk.lines, chunk.problem = _rest_of_rotated(path, pos, max_bytes)
            start = 0
        elif st.st_size < pos.offset or not _same_head(fd, pos):
            # copytruncate: the copy holds what came after our offset, unless it was already
            # compressed (then say so: those lines are lost to us).
            chunk.truncated = True
            chunk.lines, chunk.problem = _rest_of_rotated(path, pos, max_bytes, by_content=True)
            start = 0
        else:
            start = pos.offset
        lines, offset = _read_lines(fd, start, max_bytes)
        chunk.lines.extend(lines)
        head_len, head = _fingerprint(fd, st.st_size)
        chunk.position = Position(st.st_dev, st.st_ino, offset, head_len, head)
    finally:
        os.close(fd)
    return chunk


class Journal:
    """journald entries after a kept cursor, through ``journalctl -o json``."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        # Set when journalctl warned that this user cannot see the system's messages: an
        # empty answer then means "not allowed", not "nothing happened".
        self.note = ""

    def entries(
        self, cursor: str, matches: Sequence[str], *, from_start: bool, limit: int
    ) -> tuple[list[dict[str, Any]], str]:
        """Entries after ``cursor`` (empty: the first run) and the cursor to keep.

        ``matches`` are journalctl arguments (``-t``/``-u``...). On a first run without
        ``from_start`` only the newest entry is read, for its cursor: nothing old is counted.
        """
        args = ["-o", "json", "--no-pager", *matches]
        if cursor:
            args.append(f"--after-cursor={cursor}")
        elif not from_start:
            args.extend(["-n", "1"])
        out = command.run(self.argv, args, timeout=self.timeout)
        if "not seeing messages from other users" in out.stderr:
            self.note = (
                "journalctl: this user sees only its own messages"
                " (add it to the systemd-journal or adm group)"
            )
        found: list[dict[str, Any]] = []
        for line in out.stdout.splitlines():
            try:
                entry = msgspec.json.decode(line)
            except msgspec.DecodeError:
                continue  # journalctl prints only JSON lines; anything else is not an entry
            if isinstance(entry, dict):
                found.append(entry)
        last = str(found[-1].get("__CURSOR", "")) if found else ""
        if not cursor and not from_start:
            return [], last
        return found[:limit], str(found[:limit][-1].get("__CURSOR", "")) if found else cursor


def message(entry: dict[str, Any]) -> str:
    """An entry's MESSAGE as text (journald exports non-UTF-8 messages as a list of bytes)."""
    text = entry.get("MESSAGE", "")
    if isinstance(text, list):
        return bytes(b for b in text if isinstance(b, int) and 0 <= b < 256).decode(
            errors="replace"
        )
    return str(text)
