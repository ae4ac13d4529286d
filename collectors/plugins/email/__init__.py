"""Mail queues: Postfix (`postqueue -j`, or `-p` text), Postfix-format `mailq`, and `exim -bpc`."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from unity.collectors import command
from unity.sdk import Health, Metric, Plugin, Sink

DEFAULT_COMMAND = {"postfix": ["postqueue"], "mailq": ["mailq"], "exim": ["exim"]}
# "1FC3A100A1FF*   10438 Wed Jun 26 13:39:27  root@localhost.test"
_TEXT_ENTRY = re.compile(
    r"^([0-9A-Za-z]+)([*!]?)\s+(\d+)\s+(\w{3} \w{3}\s+\d+ \d\d:\d\d:\d\d)\s+(\S*)"
)
_TEXT_TOTAL = re.compile(r"^-- (\d+) Kbytes in (\d+) Requests?\.")
# Postfix says so when its master is not running: a fact about the MTA, not a broken plugin.
_DOWN = ("mail system is down", "Queue report unavailable")


class EmailConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # "mailq": a `mailq` printing Postfix's text (Postfix's own, or a wrapper around it).
    mta: Literal["postfix", "mailq", "exim"] = "postfix"
    # The argv prefix; default ["postqueue"], ["mailq"] or ["exim"].
    command: list[str] = []
    # Postfix 3.1+: `postqueue -j` (exact times); false reads the `-p` text.
    json: bool = True
    command_timeout: float = 30.0
    # Deferral reasons named in the `email_deferred` event.
    top: int = 10

    @property
    def argv(self) -> list[str]:
        return self.command or DEFAULT_COMMAND[self.mta]


@dataclass
class Queue:
    """Counts per queue (active, deferred, hold, incoming, maildrop)."""

    messages: Counter[str] = field(default_factory=Counter)
    size: dict[str, float] = field(default_factory=dict)
    oldest: dict[str, float] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, queue: str, size: float, arrival: float | None) -> None:
        self.messages[queue] += 1
        self.size[queue] = self.size.get(queue, 0.0) + size
        if arrival is not None:
            self.oldest[queue] = min(self.oldest.get(queue, arrival), arrival)


def postqueue_json(text: str) -> Queue:
    """``postqueue -j``: one JSON object per message, per line."""
    queue = Queue()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = msgspec.json.decode(line)
        except msgspec.DecodeError:
            raise command.CommandError(f"postqueue -j line {number} is not JSON") from None
        name = str(item.get("queue_name", "unknown"))
        arrival = item.get("arrival_time")
        queue.add(name, float(item.get("message_size") or 0),
                  float(arrival) if isinstance(arrival, int | float) else None)  # fmt: skip
        for recipient in item.get("recipients") or []:
            reason = recipient.get("delay_reason")
            if reason:
                queue.reasons[str(reason)[:200]] += 1
    return queue


def _text_time(text: str, now: dt.datetime) -> float:
    """mailq prints "Wed Jun 26 13:39:27": local time, no year. The year is the latest one that
    does not put the message in the future."""
    when = dt.datetime.strptime(f"{now.year} {text.split(' ', 1)[1]}", "%Y %b %d %H:%M:%S")
    if when > now + dt.timedelta(days=1):
        when = when.replace(year=now.year - 1)
    return time.mktime(when.timetuple())


def mailq_text(text: str, now: dt.datetime | None = None) -> tuple[Queue, tuple[int, int] | None]:
    """``postqueue -p`` / ``mailq`` text: entries (``*`` active, ``!`` hold, else deferred)
    and the closing ``-- N Kbytes in M Requests.`` totals, which count what the listing
    may not show."""
    now = now or dt.datetime.now()
    queue = Queue()
    totals = None
    reason = ""  # a "(reason)" line applies to the recipients listed after it
    for line in text.splitlines():
        stripped = line.strip()
        if m := _TEXT_ENTRY.match(line):
            name = {"*": "active", "!": "hold"}.get(m[2], "deferred")
            queue.add(name, float(m[3]), _text_time(m[4], now))
            reason = ""
        elif stripped.startswith("(") and stripped.endswith(")"):
            reason = stripped[1:-1][:200]
        elif m := _TEXT_TOTAL.match(line):
            totals = (int(m[1]), int(m[2]))
        elif stripped and line[0].isspace() and reason:
            queue.reasons[reason] += 1
        elif not stripped:
            reason = ""
    return queue, totals


class EmailPlugin(Plugin):
    id = "email"
    name = "Mail queue"
    description = "MTA queue size, bytes and oldest message per queue; MTA up (Postfix, Exim)."
    category = "apps"
    tags = ("postfix", "exim", "mail")
    Config = EmailConfig
    metrics = (
        Metric("email_mta_up", "", "gauge", "0 when the MTA says it is down"),
        Metric("email_queue_messages", "", "gauge", "messages per queue"),
        Metric("email_queue_bytes", "bytes", "gauge", "message bytes per queue"),
        Metric("email_queue_oldest_seconds", "seconds", "gauge", "age of the oldest message"),
    )

    config: EmailConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._note = ""
        self._reasons: list[str] | None = None

    def unavailable(self) -> str | None:
        return command.missing(self.config.argv)

    def _run(self, args: list[str]) -> str | None:
        """The tool's output, or None when the MTA says it is down."""
        try:
            return command.run(self.config.argv, args, timeout=self.config.command_timeout).stdout
        except command.CommandError as exc:
            if any(marker in str(exc) for marker in _DOWN):
                self._note = str(exc)
                return None
            raise

    def collect(self, sink: Sink) -> None:
        self._note = ""
        c = self.config
        if c.mta == "exim":
            out = self._run(["-bpc"])
            if out is not None:
                try:
                    sink.add("email_queue_messages", float(out.strip()), {"queue": "all"})
                except ValueError:
                    raise command.CommandError(f"exim -bpc printed {out.strip()[:60]!r}") from None
            sink.add("email_mta_up", 0.0 if out is None else 1.0)
            return
        json_mode = c.mta == "postfix" and c.json
        out = self._run(["-j"] if json_mode else ["-p"] if c.mta == "postfix" else [])
        sink.add("email_mta_up", 0.0 if out is None else 1.0)
        if out is None:
            return
        if json_mode:
            queue, totals = postqueue_json(out), None
        else:
            queue, totals = mailq_text(out)
        now = time.time()
        for name in sorted(set(queue.messages) | {"active", "deferred", "hold"}):
            labels = {"queue": name}
            sink.add("email_queue_messages", queue.messages[name], labels)
            sink.add("email_queue_bytes", queue.size.get(name, 0.0), labels)
            if name in queue.oldest:
                sink.add("email_queue_oldest_seconds", max(0.0, now - queue.oldest[name]), labels)
        if totals is not None:
            kbytes, requests = totals
            sink.add("email_queue_messages", requests, {"queue": "all"})
            sink.add("email_queue_bytes", kbytes * 1024.0, {"queue": "all"})
        reasons = [reason for reason, _ in queue.reasons.most_common(c.top)]
        if reasons != self._reasons and (self._reasons is not None or reasons):
            sink.event(
                "email_deferred",
                f"{sum(queue.reasons.values())} recipient(s) delayed"
                + (f": {reasons[0]}" if reasons else ""),
                {"reasons": dict(queue.reasons.most_common(c.top))},
                "warning" if reasons else "info",
            )
            self._reasons = reasons

    def health(self) -> Health | None:
        return Health("degraded", self._note[:500]) if self._note else None
