"""SSH and sudo logins, failed and successful, from auth.log or journald, per run and in total.

The lines are read from a persistent offset (``unity.collectors.tail``), so each run's counts
are exactly what was logged since the previous run (the window), whatever the lines' own
timestamps say (syslog's traditional ones carry no year and no zone).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

from unity.collectors import command, tail
from unity.sdk import Health, Metric, Plugin, Sink

# "Dec  4 17:55:01 nas sshd[812]: ..." or "2026-12-04T17:55:01.123456+00:00 nas sshd[812]: ..."
SYSLOG = re.compile(r"^(?:[A-Z][a-z]{2} [ \d]\d [\d:]{8}|\S+) \S+ ([^\s\[:]+)(?:\[\d+\])?: (.*)$")
REPEATED = re.compile(r"^message repeated (\d+) times: \[ ?(.*?) ?\]$")
SSH_FAILED = re.compile(r"^Failed (\S+) for (invalid user )?(.*?) from (\S+) port \d+")
SSH_ACCEPTED = re.compile(r"^Accepted (\S+) for (.*?) from (\S+) port \d+")
SSH_INVALID = re.compile(r"^Invalid user (.*?) from (\S+)")
SUDO = re.compile(r"^\s*(\S+) : (.*)$")
SUDO_FAILED = re.compile(
    r"^(?:(\d+) incorrect password attempts?|user NOT in sudoers|user NOT authorized on host"
    r"|command not allowed|a password is required)\b"
)
SSH_PROGRAMS = ("sshd", "sshd-session")
JOURNALD_SOCKET = "/run/systemd/journal/socket"


@dataclass
class Window:
    """What one run read: counts, the sources of failures, who logged in."""

    counts: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    users: dict[str, set[str]] = field(default_factory=dict)
    methods: Counter[str] = field(default_factory=Counter)
    logins: list[dict[str, str]] = field(default_factory=list)
    sudo_failed: list[dict[str, str]] = field(default_factory=list)

    def ssh(self, text: str, times: int) -> None:
        if m := SSH_FAILED.match(text):
            self.counts["ssh_failures"] += times
            self.sources[m[4]] += times
            self.users.setdefault(m[4], set()).add(m[3])
        elif m := SSH_ACCEPTED.match(text):
            self.counts["ssh_successes"] += times
            self.methods[m[1]] += times
            self.logins.append({"user": m[2], "from": m[3], "method": m[1]})
        elif m := SSH_INVALID.match(text):
            self.counts["ssh_invalid_users"] += times

    def sudo(self, text: str, times: int) -> None:
        m = SUDO.match(text)
        if not m or (" ; " not in m[2] and "COMMAND=" not in m[2]):
            return  # pam_unix lines and others repeat what the sudo line says
        if failed := SUDO_FAILED.match(m[2]):
            self.counts["sudo_failures"] += times * int(failed[1] or 1)
            self.sudo_failed.append({"user": m[1], "reason": m[2].split(" ; ")[0]})
        elif "COMMAND=" in m[2]:
            self.counts["sudo_successes"] += times

    def add(self, program: str, text: str) -> None:
        times = 1
        if m := REPEATED.match(text):  # rsyslog's repeated-message reduction
            times, text = int(m[1]), m[2]
        if program in SSH_PROGRAMS:
            self.ssh(text, times)
        elif program == "sudo":
            self.sudo(text, times)

    def line(self, line: str) -> None:
        if m := SYSLOG.match(line):
            self.add(m[1], m[2])


class AuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # "auto": the files below that exist, else journald.
    source: Literal["auto", "files", "journal"] = "auto"
    files: list[str] = msgspec.field(
        default_factory=lambda: ["/var/log/auth.log", "/var/log/secure"]
    )
    # journald syslog identifiers (OpenSSH 9.8+ logs as sshd-session).
    identifiers: list[str] = msgspec.field(default_factory=lambda: ["sshd", "sshd-session", "sudo"])
    # Sources of failures named in the run's event.
    top: int = 10
    from_beginning: bool = False
    state_dir: str = ""
    max_bytes: int = 8 * 1024 * 1024
    max_entries: int = 50_000
    command: list[str] = msgspec.field(default_factory=lambda: ["journalctl"])
    command_timeout: float = 20.0


class AuthPlugin(Plugin):
    id = "auth"
    name = "SSH and sudo logins"
    description = "SSH and sudo failures and successes per run and in total, top failing sources."
    category = "security"
    tags = ("ssh", "sudo", "security", "logs")
    Config = AuthConfig
    metrics = (
        Metric("auth_ssh_failures_total", "", "counter", "failed SSH authentications"),
        Metric("auth_ssh_successes_total", "", "counter", "accepted SSH logins, by method"),
        Metric("auth_ssh_invalid_users_total", "", "counter", "SSH attempts for unknown users"),
        Metric("auth_sudo_failures_total", "", "counter", "failed sudo attempts"),
        Metric("auth_sudo_successes_total", "", "counter", "commands run through sudo"),
        Metric("auth_ssh_failures", "", "gauge", "failed SSH authentications in this run's window"),
        Metric("auth_ssh_failure_sources", "", "gauge", "addresses that failed in the window"),
        Metric("auth_sudo_failures", "", "gauge", "failed sudo attempts in the window"),
    )

    config: AuthConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._problems: list[str] = []

    def _files(self) -> list[str]:
        return [f for f in self.config.files if Path(f).exists()]

    def _mode(self) -> str:
        if self.config.source == "auto":
            return "files" if self._files() else "journal"
        return self.config.source

    def unavailable(self) -> str | None:
        if self._mode() == "files":
            return None if self._files() else f"none of {', '.join(self.config.files)} exists"
        why = command.missing(self.config.command)
        if self.config.source == "auto":
            if why is None and not Path(JOURNALD_SOCKET).exists():
                why = "journald is not running"
            if why:
                return f"no auth log file ({', '.join(self.config.files)}) and {why}"
        return why

    def _read(self, offsets: tail.Offsets, window: Window) -> None:
        c = self.config
        if self._mode() == "journal":
            journal = tail.Journal(c.command, c.command_timeout)
            entries, cursor = journal.entries(
                offsets.cursors.get("journal", ""),
                [f"--identifier={i}" for i in c.identifiers],
                from_start=c.from_beginning,
                limit=c.max_entries,
            )
            offsets.cursors["journal"] = cursor
            if journal.note:
                self._problems.append(journal.note)
            for entry in entries:
                window.add(str(entry.get("SYSLOG_IDENTIFIER", "")), tail.message(entry))
            return
        for path in c.files if c.source == "files" else self._files():
            try:
                chunk = tail.read_new(
                    path,
                    offsets.positions.get(path),
                    from_start=c.from_beginning,
                    max_bytes=c.max_bytes,
                )
            except OSError as exc:
                self._problems.append(f"{path}: {exc.strerror or type(exc).__name__}")
                continue
            if chunk.problem:
                self._problems.append(chunk.problem)
            if chunk.position is not None:
                offsets.positions[path] = chunk.position
            for line in chunk.lines:
                window.line(line)

    def collect(self, sink: Sink) -> None:
        self._problems = []
        folder = Path(self.config.state_dir) if self.config.state_dir else tail.default_state_dir()
        offsets = tail.Offsets(folder / f"{self.id}-{self.instance or 'default'}.json")
        if offsets.note:
            self._problems.append(offsets.note)
        window = Window()
        self._read(offsets, window)
        totals = offsets.counters
        for name in ("ssh_failures", "ssh_invalid_users", "sudo_failures", "sudo_successes"):
            totals[name] = totals.get(name, 0.0) + window.counts[name]
        for method, n in window.methods.items():
            totals[f"ssh_successes:{method}"] = totals.get(f"ssh_successes:{method}", 0.0) + n
        offsets.save()
        for name, value in sorted(totals.items()):
            metric, _, method = name.partition(":")
            sink.add(f"auth_{metric}_total", value, {"method": method} if method else None)
        sink.add("auth_ssh_failures", window.counts["ssh_failures"])
        sink.add("auth_ssh_failure_sources", len(window.sources))
        sink.add("auth_sudo_failures", window.counts["sudo_failures"])
        self._event(sink, window)

    def _event(self, sink: Sink, window: Window) -> None:
        if not (window.sources or window.logins or window.sudo_failed):
            return
        top = [
            {"source": source, "failures": n, "users": sorted(window.users[source])[:20]}
            for source, n in window.sources.most_common(self.config.top)
        ]
        c = window.counts
        sink.event(
            "auth_window",
            f"ssh: {c['ssh_failures']} failed from {len(window.sources)} source(s), "
            f"{c['ssh_successes']} accepted; sudo: {c['sudo_failures']} failed",
            {
                "top_sources": top,
                "logins": window.logins[:50],
                "sudo_failures": window.sudo_failed[:50],
            },
            "warning" if window.sources or window.sudo_failed else "info",
        )

    def health(self) -> Health | None:
        if self._problems:
            return Health("degraded", "; ".join(self._problems)[:500])
        return None
