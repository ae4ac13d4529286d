"""Pattern matches in log files and the journal, read from a persistent offset.

Each source (a file, or journald entries through ``journalctl -o json``) is read from where the
last run stopped (see ``unity.collectors.tail``); every new line is tried against the patterns,
counted per pattern and severity (counters kept in the state file, so they never go back after
a restart), and a bounded sample of matching lines goes out as one event per run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import msgspec

from unity.collectors import command, tail
from unity.sdk import Health, Metric, Plugin, Sink

Level = Literal["debug", "info", "warning", "error", "critical"]
LEVELS: dict[Level, int] = {"debug": 0, "info": 1, "warning": 2, "error": 3, "critical": 4}


class Pattern(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    regex: str
    severity: Level = "error"

    def __post_init__(self) -> None:
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"pattern {self.name!r} is not a regular expression: {exc}") from None


class FileSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    # The series label; default: the path.
    name: str = ""


class JournalSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    # journalctl matches: units (-u) and syslog identifiers (-t); both empty = every entry.
    units: list[str] = []
    identifiers: list[str] = []


def default_patterns() -> list[Pattern]:
    return [
        Pattern("critical", r"(?i)\b(panic|fatal|emerg|alert|crit(ical)?)\b", "critical"),
        Pattern("error", r"(?i)\b(error|err|fail(ed|ure)?)\b", "error"),
        Pattern("warning", r"(?i)\bwarn(ing)?\b", "warning"),
    ]


class LogConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    files: list[FileSource] = []
    journal: list[JournalSource] = []
    patterns: list[Pattern] = msgspec.field(default_factory=default_patterns)
    # A line counts once, for the first pattern it matches (so order them worst first).
    first_match_only: bool = True
    # On the first run of a source: read what is already there (true) or start at its end.
    from_beginning: bool = False
    # Where positions, cursors and counters are kept; empty = $STATE_DIRECTORY or
    # ~/.local/state/unity.
    state_dir: str = ""
    # Bytes read per file per run (the rest waits for the next run); entries per journal.
    max_bytes: int = 8 * 1024 * 1024
    max_entries: int = 50_000
    # Matching lines kept in the run's event.
    event_lines: int = 20
    command: list[str] = msgspec.field(default_factory=lambda: ["journalctl"])
    command_timeout: float = 20.0


class LogPlugin(Plugin):
    id = "log"
    name = "Log patterns"
    description = "Pattern matches by severity in log files and journald, from a kept offset."
    category = "logs"
    tags = ("logs", "journald", "syslog")
    Config = LogConfig
    metrics = (
        Metric("log_lines_total", "", "counter", "lines read from the source"),
        Metric("log_matches_total", "", "counter", "lines matching a pattern"),
        Metric("log_rotations_total", "", "counter", "rotations and truncations seen"),
    )

    config: LogConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._compiled = [(p, re.compile(p.regex)) for p in self.config.patterns]
        self._problems: list[str] = []

    def unavailable(self) -> str | None:
        c = self.config
        if not c.files and not c.journal:
            return "no files or journal sources configured"
        if c.files and any(Path(f.path).exists() for f in c.files):
            return None
        if c.journal:
            return command.missing(c.command)
        return "none of the configured files exists"

    def _offsets(self) -> tail.Offsets:
        folder = Path(self.config.state_dir) if self.config.state_dir else tail.default_state_dir()
        return tail.Offsets(folder / f"{self.id}-{self.instance or 'default'}.json")

    def _lines(self, offsets: tail.Offsets) -> list[tuple[str, list[str]]]:
        c = self.config
        found: list[tuple[str, list[str]]] = []
        for spec in c.files:
            label = spec.name or spec.path
            try:
                chunk = tail.read_new(
                    spec.path,
                    offsets.positions.get(spec.path),
                    from_start=c.from_beginning,
                    max_bytes=c.max_bytes,
                )
            except OSError as exc:
                self._problems.append(f"{spec.path}: {exc.strerror or type(exc).__name__}")
                continue
            if chunk.problem:
                self._problems.append(chunk.problem)
            if chunk.position is not None:
                offsets.positions[spec.path] = chunk.position
            if chunk.rotated or chunk.truncated:
                self._bump(offsets, "log_rotations_total", label)
            found.append((label, chunk.lines))
        journal = tail.Journal(c.command, c.command_timeout)
        for source in c.journal:
            matches = [*(f"--unit={u}" for u in source.units),
                       *(f"--identifier={t}" for t in source.identifiers)]  # fmt: skip
            key = f"journal:{source.name}"
            entries, cursor = journal.entries(
                offsets.cursors.get(key, ""),
                matches,
                from_start=c.from_beginning,
                limit=c.max_entries,
            )
            offsets.cursors[key] = cursor
            if journal.note:
                self._problems.append(journal.note)
            found.append((source.name, [tail.message(e) for e in entries]))
        return found

    def match(self, line: str) -> list[Pattern]:
        hits = []
        for pattern, regex in self._compiled:
            if regex.search(line):
                hits.append(pattern)
                if self.config.first_match_only:
                    break
        return hits

    @staticmethod
    def _bump(offsets: tail.Offsets, metric: str, *labels: str, by: int = 1) -> None:
        name = "\x1f".join((metric, *labels))
        offsets.counters[name] = offsets.counters.get(name, 0.0) + by

    def collect(self, sink: Sink) -> None:
        self._problems = []
        offsets = self._offsets()
        if offsets.note:
            self._problems.append(offsets.note)
        sample: list[dict[str, str]] = []
        matched, worst = 0, -1
        for label, lines in self._lines(offsets):
            self._bump(offsets, "log_lines_total", label, by=len(lines))
            for line in lines:
                for pattern in self.match(line):
                    self._bump(offsets, "log_matches_total", label, pattern.name, pattern.severity)
                    matched += 1
                    worst = max(worst, LEVELS[pattern.severity])
                    if len(sample) < self.config.event_lines:
                        hit = {"source": label, "pattern": pattern.name, "line": line[:1000]}
                        sample.append(hit | {"severity": pattern.severity})
        offsets.save()
        names = {
            "log_lines_total": ("source",),
            "log_rotations_total": ("source",),
            "log_matches_total": ("source", "pattern", "severity"),
        }
        for name, value in sorted(offsets.counters.items()):
            metric, *labels = name.split("\x1f")
            sink.add(metric, value, dict(zip(names[metric], labels, strict=True)))
        if sample:
            severity: Level = next(k for k, v in LEVELS.items() if v == worst)
            sink.event(
                "log_matches",
                f"{matched} matching line(s), first: {sample[0]['line'][:200]}",
                {"lines": sample, "matches": matched},
                severity,
            )

    def health(self) -> Health | None:
        if self._problems:
            return Health("degraded", "; ".join(self._problems)[:500])
        return None
