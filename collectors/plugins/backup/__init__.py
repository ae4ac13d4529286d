"""Age of the last backup per job: restic, borg, a folder's newest file, or a command's JSON.

Repository locations and passwords go to the tools through their environment variables
(``RESTIC_REPOSITORY``, ``RESTIC_PASSWORD``, ``BORG_REPO``, ``BORG_PASSPHRASE``), never argv:
a ``rest:https://user:pass@host/`` repository is a secret too.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path
from typing import Any, Literal

import msgspec

from unity.collectors import command
from unity.sdk import Health, Metric, Plugin, Sink

DEFAULT_COMMAND = {"restic": ["restic"], "borg": ["borg"]}
# restic prints nanoseconds; fromisoformat takes at most microseconds.
_FRACTION = re.compile(r"(\.\d{6})\d+")


class BackupError(RuntimeError):
    """A job's source could not be read, or answered something without a backup time."""


class Job(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    kind: Literal["restic", "borg", "folder", "command"]
    # restic/borg: the repository (passed as RESTIC_REPOSITORY / BORG_REPO, never on argv).
    repository: str = ""
    # The repository password: from this environment variable, else this file.
    password_env: str = ""
    password_file: str = ""
    # The argv prefix; default ["restic"] or ["borg"]; required for kind = "command".
    command: list[str] = []
    # kind = "folder": the folder and a glob of the files that are backups.
    path: str = ""
    pattern: str = "*"
    recursive: bool = False
    # Older than this many seconds: backup_ok is 0.
    max_age: float = 26 * 3600.0

    def __post_init__(self) -> None:
        if self.kind in ("restic", "borg") and not self.repository:
            raise ValueError(f"job {self.name!r}: a {self.kind} job needs a repository")
        if self.kind == "folder" and not self.path:
            raise ValueError(f"job {self.name!r}: a folder job needs a path")
        if self.kind == "command" and not self.command:
            raise ValueError(f"job {self.name!r}: a command job needs a command (argv list)")

    @property
    def argv(self) -> list[str]:
        return self.command or DEFAULT_COMMAND.get(self.kind, [])


class BackupConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    jobs: list[Job] = []
    command_timeout: float = 120.0


class Latest(msgspec.Struct, frozen=True):
    """The newest backup of a job."""

    time: float
    count: int
    size: float | None = None
    ok: bool = True
    ident: str = ""
    detail: dict[str, Any] = {}


def parse_time(value: Any, *, naive_is_local: bool = False) -> float:
    """Epoch seconds from epoch numbers or ISO 8601 text.

    A time without a zone is refused unless the source is known to print local time (borg).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        raise BackupError(f"no time in {value!r}")
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BackupError(f"time {value!r} is not ISO 8601") from None
    if when.tzinfo is None:
        if not naive_is_local:
            raise BackupError(f"time {value!r} has no time zone")
        return time.mktime(when.timetuple()) + when.microsecond / 1e6
    return when.timestamp()


def restic_latest(snapshots: Any) -> Latest:
    if not isinstance(snapshots, list):
        raise BackupError("restic snapshots --json did not print a list")
    if not snapshots:
        return Latest(0.0, 0)
    times = [(parse_time(s.get("time")), s) for s in snapshots]
    when, newest = max(times, key=lambda t: t[0])
    summary = newest.get("summary") or {}
    size = summary.get("total_bytes_processed")
    detail = {
        k: newest.get(k) for k in ("short_id", "hostname", "paths", "tags", "program_version")
    }
    return Latest(when, len(snapshots), float(size) if size is not None else None,
                  ident=str(newest.get("id", "")), detail=detail)  # fmt: skip


def borg_latest(listing: Any) -> Latest:
    if not isinstance(listing, dict) or not isinstance(listing.get("archives"), list):
        raise BackupError("borg list --json printed no archives list")
    archives = listing["archives"]
    if not archives:
        return Latest(0.0, 0)
    # borg prints the local time of the machine running `borg list`, without a zone.
    times = [
        (parse_time(a.get("time") or a.get("start"), naive_is_local=True), a) for a in archives
    ]
    when, newest = max(times, key=lambda t: t[0])
    name = str(newest.get("name") or newest.get("archive") or "")
    return Latest(when, len(archives), ident=str(newest.get("id", name)), detail={"archive": name})


def command_latest(answer: Any) -> Latest:
    """``{"time": ..., "ok": true, "size_bytes": ...}`` or a list of them (the newest counts)."""
    items = answer if isinstance(answer, list) else [answer]
    if not items or not all(isinstance(i, dict) for i in items):
        raise BackupError('the command must print {"time": ...} or a list of such objects')
    times = [(parse_time(i.get("time")), i) for i in items]
    when, newest = max(times, key=lambda t: t[0])
    size = newest.get("size_bytes")
    return Latest(when, len(items), float(size) if isinstance(size, int | float) else None,
                  ok=newest.get("ok", True) is not False)  # fmt: skip


def folder_latest(job: Job) -> Latest:
    root = Path(job.path)
    if not root.is_dir():
        raise BackupError(f"{root} is not a folder")
    found = root.rglob(job.pattern) if job.recursive else root.glob(job.pattern)
    newest: os.stat_result | None = None
    count = 0
    for item in found:
        try:
            st = item.stat()
        except OSError:
            continue  # removed while we looked (a pruning job)
        if not item.is_file():
            continue
        count += 1
        if newest is None or st.st_mtime > newest.st_mtime:
            newest = st
    if newest is None:
        return Latest(0.0, 0)
    return Latest(newest.st_mtime, count, float(newest.st_size))


class BackupPlugin(Plugin):
    id = "backup"
    name = "Backups"
    description = "Age of the last backup per job (restic, borg, a folder, a command's JSON)."
    category = "storage"
    tags = ("backup", "restic", "borg")
    Config = BackupConfig
    metrics = (
        Metric("backup_age_seconds", "seconds", "gauge", "since the newest backup"),
        Metric("backup_last_timestamp_seconds", "seconds", "gauge", "newest backup, Unix time"),
        Metric("backup_ok", "", "gauge", "1 while the newest backup is younger than max_age"),
        Metric("backup_snapshots", "", "gauge", "snapshots, archives or files the job has"),
        Metric("backup_size_bytes", "bytes", "gauge", "size of the newest backup, when known"),
    )

    config: BackupConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._problems: list[str] = []
        self._seen: dict[str, str] = {}

    def unavailable(self) -> str | None:
        if not self.config.jobs:
            return "no backup jobs configured"
        reasons = []
        for job in self.config.jobs:
            if job.kind == "folder":
                reason = None if Path(job.path).is_dir() else f"no folder {job.path}"
            else:
                reason = command.missing(job.argv)
            if reason is None:
                return None
            reasons.append(f"{job.name}: {reason}")
        return "; ".join(reasons)

    def _env(self, job: Job) -> dict[str, str]:
        try:
            secret = command.read_secret(job.password_env, job.password_file)
        except command.CommandError as exc:
            raise BackupError(str(exc)) from None
        if job.kind == "restic":
            env = {"RESTIC_REPOSITORY": job.repository}
            return env | ({"RESTIC_PASSWORD": secret} if secret is not None else {})
        env = {"BORG_REPO": job.repository, "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no"}
        return env | ({"BORG_PASSPHRASE": secret} if secret is not None else {})

    def _json(self, job: Job, args: list[str], env: dict[str, str] | None = None) -> Any:
        try:
            out = command.run(job.argv, args, timeout=self.config.command_timeout, env=env)
            return msgspec.json.decode(out.stdout)
        except command.CommandError as exc:
            raise BackupError(str(exc)) from None
        except msgspec.DecodeError as exc:
            raise BackupError(f"{job.argv[0]} did not print JSON ({exc})") from None

    def latest(self, job: Job) -> Latest:
        if job.kind == "restic":
            return restic_latest(
                self._json(job, ["snapshots", "--json", "--no-lock"], self._env(job))
            )
        if job.kind == "borg":
            # `::` is the repository from BORG_REPO: the location never reaches argv.
            return borg_latest(self._json(job, ["list", "--json", "::"], self._env(job)))
        if job.kind == "command":
            return command_latest(self._json(job, []))
        return folder_latest(job)

    def collect(self, sink: Sink) -> None:
        self._problems = []
        now = time.time()
        done = 0
        for job in self.config.jobs:
            try:
                latest = self.latest(job)
            except BackupError as exc:
                self._problems.append(f"{job.name}: {exc}")
                continue
            done += 1
            labels = {"job": job.name, "kind": job.kind}
            sink.add("backup_snapshots", latest.count, labels)
            if latest.count == 0:
                sink.add("backup_ok", 0.0, labels)
                self._problems.append(f"{job.name}: no backup yet")
                continue
            age = max(0.0, now - latest.time)
            sink.add("backup_age_seconds", age, labels)
            sink.add("backup_last_timestamp_seconds", latest.time, labels)
            sink.add("backup_ok", 1.0 if latest.ok and age <= job.max_age else 0.0, labels)
            if latest.size is not None:
                sink.add("backup_size_bytes", latest.size, labels)
            self._announce(sink, job, latest)
        if self.config.jobs and not done:
            raise BackupError("; ".join(self._problems))

    def _announce(self, sink: Sink, job: Job, latest: Latest) -> None:
        """An event when a job's newest backup changes (a new snapshot is news once)."""
        ident = latest.ident or str(latest.time)
        if self._seen.get(job.name) == ident:
            return
        self._seen[job.name] = ident
        when = dt.datetime.fromtimestamp(latest.time, dt.UTC).isoformat()
        sink.event(
            "backup_latest",
            f"{job.name}: newest backup {when}",
            {"job": job.name, "kind": job.kind, "time": when, "id": latest.ident, **latest.detail},
        )

    def health(self) -> Health | None:
        if self._problems:
            return Health("degraded", "; ".join(self._problems)[:500])
        return None
