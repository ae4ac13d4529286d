"""log: real temp files appended, rotated (rename and copytruncate) and replaced between runs;
the offset survives a restart; journald through a fake journalctl printing its JSON format."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.argv_tool import calls, install
from unity.collectors import tail
from unity.collectors.command import CommandError
from unity.collectors.plugins.log import FileSource, JournalSource, LogConfig, LogPlugin, Pattern
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "log"
SEQNUM = "s=8d1f2c0b6a9e4f3d8c7b1a0e9f8d7c6b"
BOOT = "b=b2d0f5a7c1e94d7f8a6b3c2d1e0f9a8b"
LAST = f"{SEQNUM};i=2a10;{BOOT};m=1cb6ac95ca80;t=645240711a500;x=9f3e2d1c0b4a5968"
NEWEST = f"{SEQNUM};i=2a14;{BOOT};m=1cb6acf15800;t=64524076d3280;x=9f3e2d1c0b4a5968"


def plugin(tmp_path: Path, log: Path, **kw: object) -> LogPlugin:
    config = LogConfig(
        files=[FileSource(str(log), name="app")],
        state_dir=str(tmp_path / "state"),
        **kw,  # type: ignore[arg-type]
    )
    return LogPlugin(config)


def append(path: Path, *lines: str) -> None:
    with path.open("a") as fh:
        fh.write("".join(f"{line}\n" for line in lines))


def matches(values: dict[tuple[str, frozenset[tuple[str, str]]], float], pattern: str) -> float:
    return values.get(key("log_matches_total", source="app", pattern=pattern, severity=pattern), 0)


def test_first_run_starts_at_the_end_then_counts_new_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR old news", "boot ok")
    p = plugin(tmp_path, log)
    assert p.unavailable() is None
    values = by_key(collect(p))
    assert values[key("log_lines_total", source="app")] == 0
    append(log, "2026-12-04T18:00:01Z ERROR disk full", "WARNING slow", "all good")
    sink = collect(p)
    values = by_key(sink)
    assert values[key("log_lines_total", source="app")] == 3
    assert matches(values, "error") == 1
    assert matches(values, "warning") == 1
    [event] = sink.events
    assert event.kind == "log_matches"
    assert event.severity == "error"
    assert event.data["matches"] == 2
    assert [hit["line"] for hit in event.data["lines"]] == [
        "2026-12-04T18:00:01Z ERROR disk full",
        "WARNING slow",
    ]
    assert p.health() is None


def test_first_run_during_a_half_written_line(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old error\nerror being wri")
    p = plugin(tmp_path, log)
    collect(p)
    with log.open("a") as fh:
        fh.write("tten\n")
    sink = collect(p)
    # The line that was being written when we started is read whole, not from its middle.
    assert [h["line"] for h in sink.events[0].data["lines"]] == ["error being written"]


def test_from_beginning_reads_what_is_there(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "fatal: it broke", "error again")
    values = by_key(collect(plugin(tmp_path, log, from_beginning=True)))
    assert values[key("log_lines_total", source="app")] == 2
    assert matches(values, "critical") == 1
    assert matches(values, "error") == 1


def test_offset_and_counters_survive_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "start")
    collect(plugin(tmp_path, log))
    append(log, "error one")
    assert matches(by_key(collect(plugin(tmp_path, log))), "error") == 1
    # A new process (a new plugin object) reads only what came after, and its counter goes on.
    append(log, "error two", "error three")
    again = plugin(tmp_path, log)
    values = by_key(collect(again))
    assert matches(values, "error") == 3
    assert values[key("log_lines_total", source="app")] == 3
    assert by_key(collect(again))[key("log_lines_total", source="app")] == 3


def test_logrotate_rename_reads_the_rest_of_the_old_file_then_the_new(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "start")
    p = plugin(tmp_path, log)
    collect(p)
    append(log, "error before rotation")
    # logrotate `create`: rename, then a new file under the old name, written before our run.
    log.rename(tmp_path / "app.log.1")
    append(log, "error after rotation", "fine")
    sink = collect(p)
    values = by_key(sink)
    assert values[key("log_lines_total", source="app")] == 3
    assert matches(values, "error") == 2
    assert values[key("log_rotations_total", source="app")] == 1
    assert [h["line"] for h in sink.events[0].data["lines"]] == [
        "error before rotation",
        "error after rotation",
    ]
    assert p.health() is None


def test_renamed_away_and_not_yet_recreated(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "start")
    p = plugin(tmp_path, log)
    collect(p)
    append(log, "error last words")
    log.rename(tmp_path / "app.log-20261204")
    assert matches(by_key(collect(p)), "error") == 1
    append(log, "error in the new file")
    values = by_key(collect(p))
    assert matches(values, "error") == 2
    assert values[key("log_lines_total", source="app")] == 2


def test_copytruncate_reads_again_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "start", "a line long enough to move the offset well past the new content")
    p = plugin(tmp_path, log)
    collect(p)
    append(log, "error before copy")
    # logrotate `copytruncate`: copy, then truncate the same inode in place.
    shutil.copy(log, tmp_path / "app.log.1")
    inode = log.stat().st_ino
    with log.open("r+") as fh:
        fh.truncate(0)
    append(log, "error after truncate")
    assert log.stat().st_ino == inode
    sink = collect(p)
    values = by_key(sink)
    # The line written after our last read is read from the copy (same first bytes).
    assert [h["line"] for h in sink.events[0].data["lines"]] == [
        "error before copy",
        "error after truncate",
    ]
    assert values[key("log_rotations_total", source="app")] == 1
    assert p.health() is None


def test_copytruncate_with_the_copy_compressed_says_so(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "start")
    p = plugin(tmp_path, log)
    collect(p)
    append(log, "error lost to gzip")
    with log.open("r+") as fh:
        fh.truncate(0)
    append(log, "error after")
    assert matches(by_key(collect(p)), "error") == 1
    health = p.health()
    assert health is not None and "truncated and its old copy is gone" in health.message


def test_copytruncate_then_grown_past_the_old_offset(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "start of the old content")
    p = plugin(tmp_path, log)
    collect(p)
    with log.open("r+") as fh:
        fh.truncate(0)
    append(log, "NEW: error one", "NEW: error two", "NEW: error three, longer than the old file")
    values = by_key(collect(p))
    # The size alone looks like growth; the first bytes changed, so it is a new file.
    assert matches(values, "error") == 3
    assert values[key("log_rotations_total", source="app")] == 1


def test_file_replaced_in_place_is_read_from_zero_and_the_loss_is_said(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "start")
    p = plugin(tmp_path, log)
    collect(p)
    append(log, "error unread in the old file")
    fresh = tmp_path / "staging.tmp"
    append(fresh, "error in the replacement")
    os.replace(fresh, log)
    values = by_key(collect(p))
    assert matches(values, "error") == 1
    health = p.health()
    assert health is not None and health.status == "degraded"
    assert "old copy is gone" in health.message


def test_a_line_being_written_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    p = plugin(tmp_path, log)
    collect(p)
    with log.open("a") as fh:
        fh.write("error half a li")
    assert by_key(collect(p))[key("log_lines_total", source="app")] == 0
    with log.open("a") as fh:
        fh.write("ne\n")
    sink = collect(p)
    assert sink.events[0].data["lines"][0]["line"] == "error half a line"


def test_bytes_not_utf8_and_offsets_in_bytes(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    p = plugin(tmp_path, log)
    collect(p)
    # Multi-byte characters before the match: a text-mode tell() would not be a byte offset.
    with log.open("ab") as fh:
        fh.write("ünïcødé ✓ error €\n".encode() + b"\xff\xfe error in latin junk\n")
    assert matches(by_key(collect(p)), "error") == 2
    with log.open("ab") as fh:
        fh.write(b"error next\n")
    sink = collect(p)
    assert [h["line"] for h in sink.events[0].data["lines"]] == ["error next"]


def test_run_budget_leaves_the_rest_for_the_next_run(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    p = plugin(tmp_path, log, max_bytes=64)
    collect(p)
    append(log, *(f"error {i:02d} {'x' * 20}" for i in range(6)))
    seen = [matches(by_key(collect(p)), "error") for _ in range(5)]
    assert seen == [2, 4, 6, 6, 6]


def test_custom_patterns_all_matches_and_bounded_event(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    patterns = [Pattern("oom", r"Out of memory", "critical"), Pattern("kill", r"Killed", "warning")]
    p = plugin(tmp_path, log, patterns=patterns, first_match_only=False, event_lines=3)
    collect(p)
    append(log, *["Out of memory: Killed process 1234 (java)"] * 5)
    sink = collect(p)
    values = by_key(sink)
    assert values[key("log_matches_total", source="app", pattern="oom", severity="critical")] == 5
    assert values[key("log_matches_total", source="app", pattern="kill", severity="warning")] == 5
    [event] = sink.events
    assert event.severity == "critical"
    assert len(event.data["lines"]) == 3
    assert event.data["matches"] == 10


def test_missing_file_is_degraded_not_data(tmp_path: Path) -> None:
    p = plugin(tmp_path, tmp_path / "nope.log")
    assert p.unavailable() == "none of the configured files exists"
    sink = collect(p)
    assert sink.samples == []
    health = p.health()
    assert health is not None and "nope.log" in health.message


def test_damaged_state_file_resets_with_a_reason(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "x")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "log-default.json").write_text("{not json")
    p = plugin(tmp_path, log)
    collect(p)
    health = p.health()
    assert health is not None and "unreadable" in health.message
    assert msgspec.json.decode((tmp_path / "state" / "log-default.json").read_bytes())


def test_bad_regex_and_unknown_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="not a regular expression"):
        LogPlugin.parse_config({"patterns": [{"name": "x", "regex": "("}]})
    with pytest.raises(ConfigError, match="pathh"):
        LogPlugin.parse_config({"files": [{"pathh": "/var/log/syslog"}]})


def test_journal_cursor_kept_across_runs_and_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = "-o json --no-pager --identifier=sshd"
    log = install(
        monkeypatch,
        tmp_path / "bin",
        "journalctl",
        {
            f"{base} -n 1": DATA / "journalctl-252-sshd-last.jsonl",
            f"{base} --after-cursor={LAST}": DATA / "journalctl-252-sshd-after.jsonl",
            f"{base} --after-cursor={NEWEST}": tmp_path / "empty",
        },
    )
    (tmp_path / "empty").write_text("")
    config = LogConfig(
        journal=[JournalSource("ssh", identifiers=["sshd"])], state_dir=str(tmp_path / "state")
    )
    p = LogPlugin(config)
    assert p.unavailable() is None
    first = by_key(collect(p))
    assert first[key("log_lines_total", source="ssh")] == 0
    sink = collect(LogPlugin(config))  # a restart: the cursor comes from the state file
    values = by_key(sink)
    assert values[key("log_lines_total", source="ssh")] == 4
    assert values[key("log_matches_total", source="ssh", pattern="error", severity="error")] == 2
    lines = [h["line"] for h in sink.events[0].data["lines"]]
    assert lines[0].startswith("Failed password for invalid user admin")
    assert by_key(collect(p))[key("log_lines_total", source="ssh")] == 4
    assert [c[-1] for c in calls(log)] == [
        "1",
        f"--after-cursor={LAST}",
        f"--after-cursor={NEWEST}",
    ]


def test_journal_byte_array_message() -> None:
    assert tail.message({"MESSAGE": list(b"Invalid user \xffadmin")}) == "Invalid user \ufffdadmin"


def test_journalctl_failure_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, tmp_path / "bin", "journalctl", {})
    config = LogConfig(journal=[JournalSource("all")], state_dir=str(tmp_path / "s"))
    with pytest.raises(CommandError, match="journalctl exited 64"):
        collect(LogPlugin(config))


def logrotate(tmp_path: Path, log: Path, directive: str) -> None:
    """Rotate ``log`` with the real logrotate (forced), as cron would."""
    conf = tmp_path / f"logrotate-{directive}.conf"
    conf.write_text(f"{log} {{\n    {directive}\n    rotate 3\n    missingok\n}}\n")
    subprocess.run(
        ["logrotate", "--force", "--state", str(tmp_path / "logrotate.state"), str(conf)],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
@pytest.mark.parametrize("directive", ["create", "copytruncate", "nocreate"])
def test_the_real_logrotate(tmp_path: Path, directive: str) -> None:
    log = tmp_path / "app.log"
    append(log, "start")
    p = plugin(tmp_path, log)
    collect(p)
    for round_ in range(3):
        append(log, f"error {round_} before")
        logrotate(tmp_path, log, directive)
        append(log, f"error {round_} after")  # nocreate: the app makes the file again
        sink = collect(p)
        assert [h["line"] for h in sink.events[0].data["lines"]] == [
            f"error {round_} before",
            f"error {round_} after",
        ]
        assert p.health() is None
    values = by_key(collect(p))
    assert matches(values, "error") == 6
    assert values[key("log_rotations_total", source="app")] == 3
    assert sorted(f.name for f in tmp_path.glob("app.log*")) == [
        "app.log", "app.log.1", "app.log.2", "app.log.3"
    ]  # fmt: skip


def test_file_replaced_while_the_run_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "app.log"
    append(log, "start")
    p = plugin(tmp_path, log)
    collect(p)
    append(log, "error in the old file")
    real_open = os.open

    def open_then_replace(path: str | Path, flags: int, *args: int) -> int:
        fd = real_open(path, flags, *args)
        if Path(path) == log:  # the file is swapped right after we opened it
            fresh = tmp_path / "fresh"
            fresh.write_text("error in the new file\n")
            os.replace(fresh, log)
        return fd

    monkeypatch.setattr(os, "open", open_then_replace)  # tail reads through os.open
    sink = collect(p)
    monkeypatch.setattr(os, "open", real_open)
    # What this run read and the position it kept belong to the file it opened, not a mix.
    assert [h["line"] for h in sink.events[0].data["lines"]] == ["error in the old file"]
    sink = collect(p)
    assert [h["line"] for h in sink.events[0].data["lines"]] == ["error in the new file"]
