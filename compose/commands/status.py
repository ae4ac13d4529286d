from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from unity.sdk.settings import Settings, endpoints

NAME = "status"
HELP = "what runs, lag, DLQ, newest data per host, storage, URL; exit 1 if something is down"


def configure(parser: argparse.ArgumentParser) -> None:
    del parser  # no options: the global --config and --data-dir say which Unity


def _age(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.compose.status import embedded_names, gather

    if embedded_names(settings) and not (settings.data_path / "secrets.json").exists():
        # Resolving the endpoints would create credentials: a status must change nothing.
        print(
            f"unity status: no `unity up` has run on {settings.data_path}; start one there, "
            "or point --data-dir (UNITY_DATA_DIR) at the folder it uses",
            file=sys.stderr,
        )
        return 1
    status = asyncio.run(gather(settings, endpoints(settings)))
    up = f"pid {status.supervisor}" if status.supervisor else "not running"
    print(f"Unity on {status.data_dir} (unity up: {up})")
    print(f"  API        {status.api}  {'ok' if status.api_ok else 'DOWN'}")
    for proc in status.processes:
        if proc.running:
            assert proc.uptime_s is not None
            state = f"pid {proc.pid:<8} up {_age(proc.uptime_s)}"
        else:
            state = "not running"
        print(f"  {proc.name:<10} {state}")
    for lag in status.lag:
        print(f"  lag        {lag.stream}: {lag.pending} waiting, {lag.unacked} in progress")
    if status.dlq is not None:
        hint = "  (unity dlq list)" if status.dlq else ""
        print(f"  DLQ        {status.dlq} message{'s' if status.dlq != 1 else ''}{hint}")
    print(
        f"  storage    PostgreSQL {_size(status.database_bytes)}, "
        f"streams {_size(status.stream_bytes)}, data folder {_size(status.data_dir_bytes)}"
    )
    now = datetime.now(UTC)
    if status.last_seen:
        print("  newest data per host")
        for host, seen in status.last_seen:
            when = seen.isoformat(timespec="seconds")
            print(f"    {host:<24} {when}  ({_age((now - seen).total_seconds())} ago)")
    for problem in status.problems:
        print(f"problem: {problem}")
    return 0 if status.healthy else 1
