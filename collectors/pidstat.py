"""Every process's ``/proc/<pid>/stat``, read once each: what system and processes build on.

A walk over every process is the dearest read the system plugins make (about 15 us a process,
mostly the kernel formatting the file), and two plugins need it: ``system`` counts processes by
state, ``processes`` ranks them. Runs of one collector tick share one walk: the scheduler names
the tick (``collection_tick``) around each run, and ``snapshot`` reads ``/proc`` once per tick
and root, whichever plugin asks first; the other gets the same snapshot, or waits while it is
read. Outside a tick (tests, the SDK's standalone runner) every call reads afresh.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

# Larger than any /proc/<pid>/stat (52 numbers and a name of at most 64 bytes).
_STAT_READ = 4096


@dataclass(frozen=True, slots=True)
class PidStat:
    """One process: its folder, its name, and the stat fields after the name (state first)."""

    pid: int
    folder: str
    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every process of one walk and when it started (``time.monotonic()``)."""

    taken: float
    processes: tuple[PidStat, ...]


def read_stat(path: str) -> bytes | None:
    """The whole file in one read; None when the process exited since the listing."""
    # os.open/os.read: three system calls, where open() adds fstat, ioctl and a second read.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, _STAT_READ)
    except OSError:
        return None
    finally:
        os.close(fd)


def pid_stats(proc_root: str) -> Iterator[PidStat]:
    """Processes that live through the read; a missing ``proc_root`` is an error."""
    try:
        pids = [e for e in os.listdir(proc_root) if e.isdigit()]
    except OSError as exc:
        raise FileNotFoundError(f"cannot list {proc_root}: {exc}") from exc
    for pid in pids:
        folder = os.path.join(proc_root, pid)
        raw = read_stat(os.path.join(folder, "stat"))
        if raw is None:
            continue
        # The name sits in parentheses and may itself hold spaces and ')': split at the last.
        close = raw.rfind(b")")
        fields = tuple(raw[close + 2 :].decode(errors="replace").split())
        if close < 0 or not fields:
            continue
        name = raw[raw.find(b"(") + 1 : close].decode(errors="replace")
        yield PidStat(int(pid), folder, name, fields)


_tick: contextvars.ContextVar[float | None] = contextvars.ContextVar("tick", default=None)
_shared_lock = threading.Lock()
_shared: dict[str, tuple[float, Snapshot]] = {}


@contextlib.contextmanager
def collection_tick(due: float) -> Iterator[None]:
    """Runs inside this block belong to the tick due at ``due`` and share its walks."""
    token = _tick.set(due)
    try:
        yield
    finally:
        _tick.reset(token)


def snapshot(proc_root: str) -> Snapshot:
    """Every process under ``proc_root``: the current tick's walk, or a fresh one outside a tick."""
    due = _tick.get()
    if due is None:
        return _walk(proc_root)
    # Held while walking, so a plugin of the same tick waits for this walk instead of its own.
    with _shared_lock:
        kept = _shared.get(proc_root)
        if kept is not None and kept[0] == due:
            return kept[1]
        walked = _walk(proc_root)
        # Only the latest tick's walk is kept: an older one is never asked for again.
        _shared[proc_root] = (due, walked)
        return walked


def _walk(proc_root: str) -> Snapshot:
    taken = time.monotonic()
    return Snapshot(taken, tuple(pid_stats(proc_root)))
