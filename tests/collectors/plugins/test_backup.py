"""backup: the real restic and borg (Debian packages) on temp repositories when installed;
their recorded JSON through a fake tool; folders of real temp files; a command's JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.argv_tool import calls, install
from unity.collectors.plugins.backup import (
    BackupConfig,
    BackupError,
    BackupPlugin,
    Job,
    borg_latest,
    parse_time,
    restic_latest,
)
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "backup"
PASSWORD = "correct horse battery staple"


def restic_job(**kw: object) -> Job:
    return Job("nightly", "restic", repository="rest:https://u:p@backup.home.arpa/nas", **kw)  # type: ignore[arg-type]


def test_restic_recorded_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = install(
        monkeypatch,
        tmp_path / "bin",
        "restic",
        {"snapshots --json --no-lock": DATA / "restic-0.17.3-snapshots.json"},
    )
    monkeypatch.setenv("RESTIC_PW", PASSWORD)
    p = BackupPlugin(BackupConfig(jobs=[restic_job(password_env="RESTIC_PW")]))
    assert p.unavailable() is None
    sink = collect(p)
    values = by_key(sink)
    labels = {"job": "nightly", "kind": "restic"}
    newest = 1796263203.902117  # 2026-12-03T03:00:03.902117004+01:00, nanoseconds cut
    assert values[key("backup_last_timestamp_seconds", **labels)] == pytest.approx(newest)
    assert values[key("backup_snapshots", **labels)] == 3
    assert values[key("backup_size_bytes", **labels)] == 412947263299
    assert values[key("backup_age_seconds", **labels)] == pytest.approx(
        time.time() - newest, abs=60
    )
    assert values[key("backup_ok", **labels)] == 0  # the fixture is older than 26 h
    # The repository URL (with its credentials) and the password never reach argv.
    assert calls(log) == [["snapshots", "--json", "--no-lock"]]
    [event] = sink.events
    assert event.data["short_id"] == "7c1e0f3a"
    assert collect(p).events == []  # the same newest snapshot is not news twice


def test_borg_naive_times_are_local(monkeypatch: pytest.MonkeyPatch) -> None:
    listing = json.loads((DATA / "borg-1.2.8-list.json").read_text())
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        latest = borg_latest(listing)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    # 02:30:01 in Berlin (UTC+1 in December) is 01:30:01 UTC.
    assert latest.time == parse_time("2026-12-03T01:30:01+00:00")
    assert latest.count == 2
    assert latest.detail == {"archive": "nas-2026-12-03T02:30:01"}


def test_times_without_a_zone_are_refused_where_a_zone_is_due() -> None:
    with pytest.raises(BackupError, match="no time zone"):
        restic_latest([{"time": "2026-12-03T03:00:03"}])
    assert parse_time("2026-12-03T02:00:03.123456789Z") == pytest.approx(1796263203.123456)
    assert parse_time(1764727203) == 1764727203.0


def test_folder_newest_mtime(tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    (dumps / "old").mkdir(parents=True)
    for name, age in (("db-1.sql.gz", 3 * 86400), ("db-2.sql.gz", 2 * 3600), ("notes.txt", 60)):
        path = dumps / name
        path.write_bytes(b"x" * 100)
        os.utime(path, (time.time() - age, time.time() - age))
    (dumps / "old" / "db-0.sql.gz").write_bytes(b"y" * 7)
    job = Job("db", "folder", path=str(dumps), pattern="*.sql.gz", max_age=3 * 3600)
    values = by_key(collect(BackupPlugin(BackupConfig(jobs=[job]))))
    labels = {"job": "db", "kind": "folder"}
    assert values[key("backup_snapshots", **labels)] == 2
    assert values[key("backup_age_seconds", **labels)] == pytest.approx(2 * 3600, abs=60)
    assert values[key("backup_ok", **labels)] == 1
    deep = Job("db", "folder", path=str(dumps), pattern="*.sql.gz", recursive=True)
    values = by_key(collect(BackupPlugin(BackupConfig(jobs=[deep]))))
    # The file just written in old/ is the newest now.
    assert values[key("backup_snapshots", **labels)] == 3
    assert values[key("backup_size_bytes", **labels)] == 7


def test_command_printing_json(tmp_path: Path) -> None:
    script = tmp_path / "status.py"
    script.write_text(
        "import json\n"
        'print(json.dumps([{"time": "2026-12-03T01:00:00Z", "ok": True},'
        ' {"time": "2026-12-04T01:00:00+00:00", "ok": False, "size_bytes": 5}]))\n'
    )
    job = Job("vm", "command", command=[sys.executable, str(script)])
    values = by_key(collect(BackupPlugin(BackupConfig(jobs=[job]))))
    labels = {"job": "vm", "kind": "command"}
    assert values[key("backup_last_timestamp_seconds", **labels)] == parse_time(
        "2026-12-04T01:00:00Z"
    )
    assert values[key("backup_ok", **labels)] == 0  # the newest run said it failed
    assert values[key("backup_size_bytes", **labels)] == 5


def test_one_job_failing_degrades_all_failing_raises(tmp_path: Path) -> None:
    good = Job("db", "folder", path=str(tmp_path))
    (tmp_path / "a").write_text("x")
    bad = Job("vm", "command", command=[sys.executable, "-c", "print('not json')"])
    p = BackupPlugin(BackupConfig(jobs=[good, bad]))
    values = by_key(collect(p))
    assert values[key("backup_snapshots", job="db", kind="folder")] == 1
    health = p.health()
    assert health is not None and health.status == "degraded"
    assert health.message.startswith("vm: ") and "did not print JSON" in health.message
    with pytest.raises(BackupError, match="vm: "):
        collect(BackupPlugin(BackupConfig(jobs=[bad])))


def test_empty_repository_is_not_ok(tmp_path: Path) -> None:
    p = BackupPlugin(BackupConfig(jobs=[Job("db", "folder", path=str(tmp_path))]))
    values = by_key(collect(p))
    assert values[key("backup_ok", job="db", kind="folder")] == 0
    assert key("backup_age_seconds", job="db", kind="folder") not in values
    health = p.health()
    assert health is not None and health.message == "db: no backup yet"


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="needs a repository"):
        BackupPlugin.parse_config({"jobs": [{"name": "x", "kind": "restic"}]})
    with pytest.raises(ConfigError, match="needs a command"):
        BackupPlugin.parse_config({"jobs": [{"name": "x", "kind": "command"}]})
    with pytest.raises(ConfigError, match=r"'jobs\[0\]\.repo'"):
        BackupPlugin.parse_config({"jobs": [{"name": "x", "kind": "borg", "repo": "/r"}]})
    assert BackupPlugin().unavailable() == "no backup jobs configured"


def run(argv: list[str], env: dict[str, str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, env={**os.environ, **env}, timeout=120)


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed (apt restic)")
def test_real_restic_repository(tmp_path: Path) -> None:
    repo, data = tmp_path / "repo", tmp_path / "data"
    data.mkdir()
    (data / "file").write_text("hello")
    secret = tmp_path / "restic.pass"
    secret.write_text(PASSWORD + "\n")
    env = {"RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}
    run(["restic", "init"], env)
    job = Job("local", "restic", repository=str(repo), password_file=str(secret))
    p = BackupPlugin(BackupConfig(jobs=[job]))
    labels = {"job": "local", "kind": "restic"}
    assert by_key(collect(p))[key("backup_snapshots", **labels)] == 0
    run(["restic", "backup", "-q", str(data)], env)
    before = time.time()
    values = by_key(collect(p))
    assert values[key("backup_snapshots", **labels)] == 1
    assert values[key("backup_ok", **labels)] == 1
    assert values[key("backup_last_timestamp_seconds", **labels)] <= before
    assert values[key("backup_age_seconds", **labels)] < 600
    secret.write_text("wrong\n")
    with pytest.raises(BackupError, match="restic exited"):
        collect(p)


@pytest.mark.skipif(shutil.which("borg") is None, reason="borg not installed (apt borgbackup)")
def test_real_borg_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BORG_BASE_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("BORG_PW", PASSWORD)
    repo, data = tmp_path / "repo", tmp_path / "data"
    data.mkdir()
    (data / "file").write_text("hello")
    env = {"BORG_REPO": str(repo), "BORG_PASSPHRASE": PASSWORD}
    run(["borg", "init", "--encryption=repokey"], env)
    run(["borg", "create", "::first", str(data)], env)
    job = Job("local", "borg", repository=str(repo), password_env="BORG_PW")
    values = by_key(collect(BackupPlugin(BackupConfig(jobs=[job]))))
    labels = {"job": "local", "kind": "borg"}
    assert values[key("backup_snapshots", **labels)] == 1
    # borg printed local time without a zone; read as local, the age is small and not negative.
    assert 0 <= values[key("backup_age_seconds", **labels)] < 600
