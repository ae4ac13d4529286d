"""Every process's ``/proc/<pid>/stat``, read once each: what system and processes build on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PidStat:
    """One process: its folder, its name, and the stat fields after the name (state first)."""

    pid: int
    folder: str
    name: str
    fields: list[str]


def pid_stats(proc_root: str) -> Iterator[PidStat]:
    """Processes that live through the read; a missing ``proc_root`` is an error."""
    try:
        pids = [e for e in os.listdir(proc_root) if e.isdigit()]
    except OSError as exc:
        raise FileNotFoundError(f"cannot list {proc_root}: {exc}") from exc
    for pid in pids:
        folder = os.path.join(proc_root, pid)
        try:
            with open(os.path.join(folder, "stat"), "rb") as fh:
                raw = fh.read().decode(errors="replace")
        except OSError:
            continue  # exited since the listing
        # The name sits in parentheses and may itself hold spaces and ')': split at the last.
        close = raw.rfind(")")
        fields = raw[close + 2 :].split()
        if close < 0 or not fields:
            continue
        yield PidStat(int(pid), folder, raw[raw.find("(") + 1 : close], fields)
