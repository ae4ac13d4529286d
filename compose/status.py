"""What `unity status` reports: the processes of `unity up`, the servers, ingest's lag, the DLQ,
the newest data per host, storage used and the API. Every probe has a short timeout; a probe
that fails is reported as a problem, never raised."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nats.errors
import nats.js.errors
import psutil

from unity.compose.embedded import PidFile
from unity.compose.reach import Unreachable, nats_once, pg_once
from unity.compose.stack import SERVICES, api_url
from unity.schemas.storage import DURABLE
from unity.sdk.settings import Endpoints, Settings

PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Proc:
    name: str
    pid: int | None
    uptime_s: float | None

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True, slots=True)
class Lag:
    stream: str
    pending: int
    unacked: int


@dataclass
class Status:
    data_dir: Path
    api: str
    supervisor: int | None = None
    processes: list[Proc] = field(default_factory=list)
    api_ok: bool = False
    lag: list[Lag] = field(default_factory=list)
    dlq: int | None = None
    stream_bytes: int | None = None
    database_bytes: int | None = None
    data_dir_bytes: int = 0
    last_seen: list[tuple[str, datetime]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


def embedded_names(settings: Settings) -> list[str]:
    """The servers `unity up` runs itself (those not given by URL)."""
    given = {
        "nats": settings.nats_url,
        "postgres": settings.database_url,
        "valkey": settings.valkey_url,
    }
    return [name for name, url in given.items() if not url]


def supervisor_pid(data_dir: Path) -> int | None:
    """The pid of the `unity up` holding the data folder's lock, or None when none runs."""
    path = data_dir / "unity.lock"
    try:
        fh = open(path)  # noqa: SIM115 -- closed below
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
        return None


def process(data_dir: Path, name: str) -> Proc:
    proc = PidFile(data_dir / "run" / f"{name}.pid").stale_process()
    try:
        # An exited child its parent has not reaped yet is a zombie: not running either.
        if proc is None or proc.status() == psutil.STATUS_ZOMBIE:
            return Proc(name, None, None)
        return Proc(name, proc.pid, time.time() - proc.create_time())
    except psutil.NoSuchProcess:
        return Proc(name, None, None)


def _folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


async def gather(settings: Settings, ep: Endpoints) -> Status:
    data = settings.data_path
    status = Status(data, api_url(settings))
    status.supervisor = supervisor_pid(data)
    if status.supervisor is None:
        status.problems.append(f"`unity up` is not running on {data}")
    status.processes = [process(data, n) for n in (*embedded_names(settings), *SERVICES)]
    if status.supervisor is not None:
        status.problems += [f"{p.name} is not running" for p in status.processes if not p.running]
    status.data_dir_bytes = await asyncio.to_thread(_folder_bytes, data)
    await asyncio.gather(
        _nats(settings, ep, status), _postgres(ep, status), asyncio.to_thread(_api, status)
    )
    return status


async def _nats(settings: Settings, ep: Endpoints, status: Status) -> None:
    try:
        nc = await asyncio.wait_for(nats_once(ep, "unity-status", hint=""), PROBE_TIMEOUT_S * 2)
    except (Unreachable, TimeoutError) as exc:
        status.problems.append(str(exc) or "NATS did not answer")
        return
    js = nc.jetstream(timeout=PROBE_TIMEOUT_S)
    subjects = settings.subjects
    try:
        status.stream_bytes = 0
        for stream in (subjects.metrics_stream, subjects.events_stream):
            info = await js.consumer_info(stream, DURABLE)
            status.lag.append(Lag(stream, info.num_pending or 0, info.num_ack_pending or 0))
            status.stream_bytes += (await js.stream_info(stream)).state.bytes
        dlq = await js.stream_info(subjects.dlq_stream)
        status.dlq = dlq.state.messages
        status.stream_bytes += dlq.state.bytes
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
        status.problems.append(f"JetStream: {type(exc).__name__}: {exc}")
    finally:
        await nc.close()


async def _postgres(ep: Endpoints, status: Status) -> None:
    try:
        conn = await asyncio.wait_for(pg_once(ep, hint=""), PROBE_TIMEOUT_S * 2)
    except (Unreachable, TimeoutError) as exc:
        status.problems.append(str(exc) or "PostgreSQL did not answer")
        return
    try:
        status.database_bytes = await conn.fetchval("SELECT pg_database_size(current_database())")
        rows = await conn.fetch(
            "SELECT host, max(last_seen) AS seen FROM plugins"
            " WHERE last_seen IS NOT NULL GROUP BY host ORDER BY host"
        )
        status.last_seen = [(r["host"], r["seen"]) for r in rows]
    finally:
        await conn.close()


def _api(status: Status) -> None:
    try:
        with urllib.request.urlopen(  # noqa: S310 -- our own API's URL
            f"{status.api}/health", timeout=PROBE_TIMEOUT_S
        ) as resp:
            said = json.load(resp).get("status")
    except (OSError, ValueError) as exc:
        status.problems.append(f"the API at {status.api} does not answer ({type(exc).__name__})")
        return
    status.api_ok = said == "ok"
    if not status.api_ok:
        status.problems.append(f"the API at {status.api} reports {said!r}")
