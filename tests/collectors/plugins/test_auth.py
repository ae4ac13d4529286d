"""auth: real temp auth logs appended and rotated during the test; journald through a fake
journalctl printing its JSON format."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.argv_tool import install
from unity.collectors.plugins.auth import AuthConfig, AuthPlugin, Window
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "auth"
JOURNAL = Path(__file__).parent / "testdata" / "log"
DEBIAN = (DATA / "debian12-auth.log").read_text().splitlines(keepends=True)
ROCKY = (DATA / "rocky9-secure.log").read_text().splitlines(keepends=True)


def plugin(tmp_path: Path, log: Path, **kw: object) -> AuthPlugin:
    config = AuthConfig(files=[str(log)], state_dir=str(tmp_path / "state"), **kw)  # type: ignore[arg-type]
    return AuthPlugin(config)


def write(path: Path, lines: list[str]) -> None:
    with path.open("a") as fh:
        fh.writelines(lines)


def test_debian_auth_log_counts_a_window(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    p = plugin(tmp_path, log)
    assert p.unavailable() is None
    collect(p)
    write(log, DEBIAN)
    sink = collect(p)
    values = by_key(sink)
    assert values[key("auth_ssh_failures_total")] == 4
    assert values[key("auth_ssh_invalid_users_total")] == 1
    assert values[key("auth_ssh_successes_total", method="publickey")] == 1
    assert values[key("auth_ssh_successes_total", method="password")] == 1
    # bob's "3 incorrect password attempts" is three; the pam_unix line says it again: not counted.
    assert values[key("auth_sudo_failures_total")] == 4
    assert values[key("auth_sudo_successes_total")] == 1
    assert values[key("auth_ssh_failures")] == 4
    assert values[key("auth_ssh_failure_sources")] == 2
    assert values[key("auth_sudo_failures")] == 4
    [event] = sink.events
    assert event.kind == "auth_window"
    assert event.severity == "warning"
    assert event.data["top_sources"] == [
        {"source": "198.51.100.23", "failures": 3, "users": ["root"]},
        {"source": "203.0.113.45", "failures": 1, "users": ["admin"]},
    ]
    assert event.data["logins"] == [
        {"user": "alice", "from": "192.0.2.10", "method": "publickey"},
        {"user": "bob", "from": "192.0.2.11", "method": "password"},
    ]
    assert [f["user"] for f in event.data["sudo_failures"]] == ["bob", "mallory"]
    # The next window is empty; totals stay.
    values = by_key(collect(p))
    assert values[key("auth_ssh_failures")] == 0
    assert values[key("auth_ssh_failures_total")] == 4


def test_traditional_timestamps_repeated_messages_ipv6() -> None:
    window = Window()
    for line in ROCKY:
        window.line(line.rstrip("\n"))
    # 1 + "message repeated 2 times" + a failed publickey.
    assert window.counts["ssh_failures"] == 4
    assert window.sources == {"203.0.113.45": 3, "2001:db8::7": 1}
    assert window.counts["ssh_invalid_users"] == 1
    assert window.methods == {"publickey": 1}
    assert window.counts["sudo_successes"] == 1
    assert window.counts["sudo_failures"] == 1
    assert window.sudo_failed == [{"user": "deploy", "reason": "a password is required"}]


def test_rotation_during_the_test_loses_and_doubles_nothing(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    p = plugin(tmp_path, log)
    collect(p)
    write(log, DEBIAN[:12])
    first = by_key(collect(p))
    assert first[key("auth_ssh_failures")] == 4
    write(log, DEBIAN[12:18])
    log.rename(tmp_path / "auth.log.1")  # logrotate (create): weekly, rotate 4
    write(log, DEBIAN[18:])
    values = by_key(collect(p))
    assert values[key("auth_ssh_failures_total")] == 4
    assert values[key("auth_ssh_successes_total", method="publickey")] == 1
    assert values[key("auth_ssh_successes_total", method="password")] == 1
    assert values[key("auth_sudo_failures_total")] == 4
    assert p.health() is None
    # copytruncate next time, and a restart in between.
    os.truncate(log, 0)
    write(log, ROCKY)
    values = by_key(collect(plugin(tmp_path, log)))
    assert values[key("auth_ssh_failures_total")] == 8
    assert values[key("auth_ssh_failures")] == 4


def test_auto_falls_back_to_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cursor = (JOURNAL / "journalctl-252-sshd-last.jsonl").read_text().split('"__CURSOR":"')[1]
    cursor = cursor.split('"')[0]
    base = "-o json --no-pager --identifier=sshd --identifier=sshd-session --identifier=sudo"
    install(
        monkeypatch,
        tmp_path / "bin",
        "journalctl",
        {
            f"{base} -n 1": JOURNAL / "journalctl-252-sshd-last.jsonl",
            f"{base} --after-cursor={cursor}": JOURNAL / "journalctl-252-sshd-after.jsonl",
        },
    )
    p = plugin(tmp_path, tmp_path / "no-auth.log")
    assert p.unavailable() == (
        f"no auth log file ({tmp_path / 'no-auth.log'}) and journald is not running"
    )
    socket = tmp_path / "journal.socket"
    socket.touch()
    monkeypatch.setattr("unity.collectors.plugins.auth.JOURNALD_SOCKET", str(socket))
    assert p.unavailable() is None
    assert by_key(collect(p))[key("auth_ssh_failures")] == 0
    values = by_key(collect(p))
    assert values[key("auth_ssh_failures")] == 1
    assert values[key("auth_ssh_successes_total", method="publickey")] == 1
    # The invalid user whose MESSAGE journald exported as bytes.
    assert values[key("auth_ssh_invalid_users_total")] == 1


def test_journal_this_user_cannot_read_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # journalctl run by a user outside systemd-journal/adm: exit 0, own entries only, a hint.
    fake = tmp_path / "bin" / "journalctl"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "sys.stderr.write('Hint: You are currently not seeing messages from other users and the"
        " system.\\n      Users in groups \\'adm\\', \\'systemd-journal\\' can see all"
        " messages.\\n      Pass -q to turn off this notice.\\n')\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    p = plugin(tmp_path, tmp_path / "auth.log", source="journal")
    values = by_key(collect(p))
    assert values[key("auth_ssh_failures")] == 0
    health = p.health()
    assert health is not None and "sees only its own messages" in health.message


def test_unavailable_names_both_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    p = plugin(tmp_path, tmp_path / "auth.log")
    assert p.unavailable() == (
        f"no auth log file ({tmp_path / 'auth.log'}) and journalctl not found on PATH"
    )


def test_unreadable_file_is_degraded(tmp_path: Path) -> None:
    p = plugin(tmp_path, tmp_path / "auth.log", source="files")
    sink = collect(p)
    assert [s.value for s in sink.samples if s.name == "auth_ssh_failures"] == [0]
    health = p.health()
    assert health is not None and health.status == "degraded"
    assert "auth.log" in health.message


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="'file'"):
        AuthPlugin.parse_config({"file": "/var/log/auth.log"})
