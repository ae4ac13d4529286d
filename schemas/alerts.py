"""Alert rules, their expressions, matchers, message templates and the state-change message.

Pure descriptions shared by the evaluator (``ingest/alerts``) and the API: no I/O.

An expression reads one value per series, Prometheus-like::

    disk_used_percent{mount="/"}                  the newest value
    avg(cpu_load5[15m]) / cpu_cores_logical       a window function, divided per host
    max(rate(net_rx_bytes_total{nic="eth0"})[5m])  the per-second rate of a counter

The selector syntax is ``/query``'s: ``name{key="v", key!="v", key=~"re", key!~"re"}``, where
``host``, ``plugin``, ``instance`` and ``name`` match the series and any other key a label.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

__all__ = [
    "ALERT_STATES",
    "DEFAULT_RULES",
    "SEVERITY_RANK",
    "ActiveAlert",
    "AlertChange",
    "AlertList",
    "AlertState",
    "Channel",
    "ChannelBody",
    "ChannelList",
    "Comparison",
    "Delivery",
    "DeliveryList",
    "Expression",
    "HistoryItem",
    "HistoryList",
    "Maintenance",
    "MaintenanceBody",
    "MaintenanceList",
    "Matcher",
    "Recurrence",
    "Rule",
    "RuleError",
    "RuleFile",
    "RuleInfo",
    "RuleKind",
    "RuleList",
    "RuleSeverity",
    "Selector",
    "Silence",
    "SilenceBody",
    "SilenceList",
    "TestQueued",
    "Window",
    "WindowFunction",
    "compare",
    "format_value",
    "in_window",
    "parse_duration",
    "parse_expression",
    "parse_selector",
    "redact_url",
    "render",
]

RuleKind = Literal["threshold", "absence", "health", "event"]
RuleSeverity = Literal["info", "warning", "critical"]
Comparison = Literal[">", ">=", "<", "<=", "==", "!="]
AlertState = Literal["pending", "firing", "resolved"]
Recurrence = Literal["once", "daily", "weekly"]
WindowFunction = Literal["avg", "min", "max", "last"]
ALERT_STATES: Final[tuple[AlertState, ...]] = ("pending", "firing", "resolved")
SEVERITY_RANK: Final[dict[str, int]] = {"info": 0, "warning": 1, "critical": 2}
COLUMNS: Final = ("host", "plugin", "instance", "name")
MAX_EXPRESSION: Final = 2000
MAX_WINDOW_S: Final = 86400.0

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
_OP = re.compile(r"=~|!~|!=|=")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


class RuleError(ValueError):
    """A rule, expression or matcher is invalid.

    Attributes:
        position: Character offset of the problem in the expression, or None.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True, slots=True)
class Matcher:
    """One ``key op "value"`` of a selector."""

    key: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, actual: str) -> bool:
        if self.pattern is not None:
            return (self.pattern.fullmatch(actual) is not None) == (self.op == "=~")
        return (actual == self.value) == (self.op == "=")


@dataclass(frozen=True, slots=True)
class Selector:
    """Matchers that must all hold; a missing key equals the empty string."""

    matchers: tuple[Matcher, ...] = ()

    def matches(self, fields: dict[str, str]) -> bool:
        """Whether ``fields`` (series columns and labels in one mapping) satisfy every matcher."""
        return all(m.matches(fields.get(m.key, "")) for m in self.matchers)

    def equal(self, key: str) -> str | None:
        """The value ``key`` must equal, when a matcher pins it."""
        return next((m.value for m in self.matchers if m.key == key and m.op == "="), None)


@dataclass(frozen=True, slots=True)
class Window:
    """A window function over the last ``seconds``."""

    function: WindowFunction
    seconds: float


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed expression: which series, whether as a rate, over which window, divided by what.

    Attributes:
        selector: The series read.
        rate: Read a counter as its per-second rate.
        window: The window function, or None for the newest value.
        divisor: A metric name whose newest value on the same host, plugin and instance divides
            the value (``cpu_cores_logical`` for load per core), or None.
    """

    selector: Selector
    rate: bool = False
    window: Window | None = None
    divisor: str | None = None


def parse_duration(text: str) -> float:
    """Seconds from ``90s``, ``5m``, ``1h30m``, ``2d`` or a bare number of seconds.

    Raises:
        RuleError: The text is not a duration.
    """
    raw = text.strip()
    try:
        return float(raw)
    except ValueError:
        pass
    pos, total = 0, 0.0
    while pos < len(raw):
        m = _DURATION.match(raw, pos)
        if m is None:
            raise RuleError(f"{text!r} is not a duration like 90s, 5m, 1h30m or 2d")
        total += float(m[1]) * _UNITS[m[2]]
        pos = m.end()
    if not raw:
        raise RuleError("empty duration")
    return total


def parse_selector(text: str) -> Selector:
    """Parse ``name{k="v", ...}`` or ``{k="v"}``; an empty text matches everything.

    Raises:
        RuleError: Naming the position of the problem.
    """
    if not text.strip():
        return Selector()
    parser = _Parser(text, "selector")
    selector = parser.selector()
    parser.end()
    return selector


def parse_expression(text: str) -> Expression:
    """Parse an alert expression (see the module docstring).

    Raises:
        RuleError: Naming the position of the problem.
    """
    if len(text) > MAX_EXPRESSION:
        raise RuleError(f"expression is longer than {MAX_EXPRESSION} characters")
    parser = _Parser(text)
    expression = parser.expression()
    parser.end()
    return expression


class _Parser:
    def __init__(self, text: str, kind: str = "expression") -> None:
        self.text = text
        self.kind = kind  # what the messages call the text: an expression or a selector
        self.pos = 0

    def fail(self, what: str) -> RuleError:
        return RuleError(
            f"bad {self.kind} at position {self.pos}: {what} in {self.text!r}", self.pos
        )

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.fail(f"expected {char!r}, found {found}")
        self.pos += 1

    def name(self) -> str:
        self.peek()
        m = _NAME.match(self.text, self.pos)
        if m is None:
            return ""
        self.pos = m.end()
        return m.group()

    def end(self) -> None:
        if self.peek():
            raise self.fail(f"unexpected {self.peek()!r}")

    def expression(self) -> Expression:
        start = self.pos
        word = self.name()
        window: Window | None = None
        if word in ("avg", "min", "max", "last") and self.peek() == "(":
            self.pos += 1
            rate, selector = self.series()
            self.take("[")
            seconds = self.duration()
            self.take("]")
            self.take(")")
            window = Window(word, seconds)  # type: ignore[arg-type]
        else:
            self.pos = start
            rate, selector = self.series()
        divisor = None
        if self.peek() == "/":
            self.pos += 1
            divisor = self.name()
            if not divisor:
                raise self.fail("expected a metric name after '/'")
        return Expression(selector, rate, window, divisor)

    def series(self) -> tuple[bool, Selector]:
        start = self.pos
        if self.name() == "rate" and self.peek() == "(":
            self.pos += 1
            selector = self.selector()
            self.take(")")
            return True, selector
        self.pos = start
        return False, self.selector()

    def duration(self) -> float:
        self.peek()
        m = re.compile(r"[0-9.a-z]+").match(self.text, self.pos)
        if m is None:
            raise self.fail("expected a duration like 5m")
        try:
            seconds = parse_duration(m.group())
        except RuleError:
            raise self.fail(f"{m.group()!r} is not a duration like 90s or 5m") from None
        if not 0 < seconds <= MAX_WINDOW_S:
            raise self.fail(f"a window must be above 0 and at most {MAX_WINDOW_S:.0f}s")
        self.pos = m.end()
        return seconds

    def selector(self) -> Selector:
        matchers: list[Matcher] = []
        if name := self.name():
            matchers.append(Matcher("name", "=", name))
        braces = self.peek() == "{"
        if braces:
            self.pos += 1
            while self.peek() != "}":
                if not self.peek():
                    raise self.fail("missing '}'")
                matchers.append(self.matcher())
                if self.peek() == ",":
                    self.pos += 1
                elif self.peek() != "}":
                    raise self.fail("expected ',' or '}'" if self.peek() else "missing '}'")
            self.pos += 1
        if not matchers:
            raise self.fail(
                "no metric name and no matchers" if braces else "expected a metric name or '{'"
            )
        return Selector(tuple(matchers))

    def matcher(self) -> Matcher:
        key = self.name()
        if not key:
            raise self.fail("expected a label name")
        key = "name" if key == "__name__" else key
        self.peek()
        m = _OP.match(self.text, self.pos)
        if m is None:
            raise self.fail(f"expected =, !=, =~ or !~ after {key!r}")
        self.pos = m.end()
        op = m.group()
        self.peek()
        start = self.pos
        value = self.string()
        if op in ("=~", "!~"):
            try:
                return Matcher(key, op, value, re.compile(value))
            except re.error as exc:
                self.pos = start
                raise self.fail(f"bad regex {value!r}: {exc}") from None
        return Matcher(key, op, value)

    def string(self) -> str:
        quote = self.peek()
        if quote not in ('"', "'"):
            raise self.fail("expected a quoted value")
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == quote:
                return "".join(out)
            if ch == "\\":
                if self.pos >= len(self.text) or self.text[self.pos] not in _ESCAPES:
                    raise self.fail("bad escape in a quoted value")
                out.append(_ESCAPES[self.text[self.pos]])
                self.pos += 1
            else:
                out.append(ch)
        raise self.fail("unterminated quoted value")


def compare(value: float, op: Comparison, threshold: float) -> bool:
    """``value op threshold``."""
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    return value != threshold


_Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
_Seconds = Annotated[float, msgspec.Meta(ge=0, le=365 * 86400)]


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One alert rule.

    Attributes:
        name: Unique id, a subject token (``unity.alerts.<name>``).
        kind: ``threshold`` (an expression against a threshold), ``absence`` (no data for
            ``for_s``, judged by the time data reached the stream), ``health`` (a plugin
            reporting one of ``statuses`` for ``runs`` runs in a row) or ``event`` (an event
            matching ``expr`` over host, plugin, instance, kind, severity and its labels).
        expr: The expression (threshold), or the selector of what is watched (other kinds).
        op: Comparison of the value with ``threshold``.
        threshold: The value that starts the alert.
        clear: The value past which it resolves (hysteresis); None means ``threshold``.
        for_s: How long the condition must hold before firing; for absence, the silence.
        by: For absence: what goes silent, ``host``, ``plugin`` or ``series``.
        runs: For health: consecutive bad runs.
        statuses: For health: which statuses count as bad.
        hold_s: For event: how long an event alert stays firing after the last event.
        severity: ``info``, ``warning`` or ``critical``.
        labels: Added to the alert's labels (routing, silences).
        message: Template; ``{host}``, ``{value}``, ``{threshold}``, ``{clear}``, ``{rule}``,
            ``{severity}``, ``{state}``, ``{name}``, ``{plugin}``, ``{instance}`` and any label.
        repeat_s: Notify again after this long while still firing (0: never).
        enabled: Whether it is evaluated.
        description: Free text.
    """

    name: _Name
    expr: str
    kind: RuleKind = "threshold"
    op: Comparison = ">"
    threshold: float = 0.0
    clear: float | None = None
    for_s: _Seconds = 0.0
    by: Literal["host", "plugin", "series"] = "series"
    runs: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    statuses: tuple[Literal["degraded", "error"], ...] = ("error",)
    hold_s: _Seconds = 3600.0
    severity: RuleSeverity = "warning"
    labels: dict[str, str] = {}
    message: str = ""
    repeat_s: _Seconds = 4 * 3600.0
    enabled: bool = True
    description: str = ""

    def check(self) -> Expression | Selector:
        """Parse what ``expr`` holds for this kind.

        Raises:
            RuleError: The expression is invalid, or a field does not fit the kind.
        """
        if self.kind == "threshold":
            expression = parse_expression(self.expr)
            if self.clear is not None and not _clears_past(self.op, self.threshold, self.clear):
                raise RuleError(
                    f"clear {self.clear} must lie on the resolved side of threshold "
                    f"{self.threshold} for {self.op!r}"
                )
            return expression
        if self.kind == "absence" and self.for_s <= 0:
            raise RuleError("an absence rule needs for_s above 0 (how long the silence lasts)")
        return parse_selector(self.expr)

    def breached(self, value: float) -> bool:
        return compare(value, self.op, self.threshold)

    def cleared(self, value: float) -> bool:
        """Whether a firing alert resolves at ``value`` (past the clear threshold)."""
        if self.clear is None:
            return not self.breached(value)
        return not compare(value, self.op, self.clear) and value != self.clear


def _clears_past(op: Comparison, threshold: float, clear: float) -> bool:
    if op in (">", ">="):
        return clear <= threshold
    if op in ("<", "<="):
        return clear >= threshold
    return True


class RuleFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A TOML rule file: ``[[rule]]`` tables, each a ``Rule``."""

    rule: list[Rule] = []


class AlertChange(msgspec.Struct, frozen=True, kw_only=True):
    """A state change, published on ``unity.alerts.<rule>`` with ``Nats-Msg-Id`` = ``id``.

    Attributes:
        id: ``<rule>:<fingerprint>:<episode>:<state>[:<n>]``: the same transition computes the
            same id in every evaluator, so JetStream keeps it once.
        rule: The rule's name.
        fingerprint: Which alert of the rule (a hash of its identity).
        episode: Epoch milliseconds when the condition began holding: one pending-to-resolved run.
        state: The new state.
        severity: The rule's severity.
        labels: host, plugin, instance, name and the series and rule labels.
        value: The value that caused the change, if any.
        unit: The value's unit.
        threshold: The rule's threshold.
        message: The rendered message.
        ts: When the change happened (epoch seconds).
        since: When the alert entered this state (epoch seconds).
        repeat: 0 for a transition, n for the n-th reminder while firing.
    """

    id: str
    rule: str
    fingerprint: str
    episode: int
    state: AlertState
    severity: RuleSeverity
    labels: dict[str, str]
    value: float | None = None
    unit: str = ""
    threshold: float | None = None
    message: str = ""
    ts: float = 0.0
    since: float = 0.0
    repeat: int = 0


def in_window(
    now: datetime, starts_at: datetime, duration_s: float, recurrence: Recurrence
) -> bool:
    """Whether ``now`` lies in a maintenance window starting at ``starts_at`` (UTC, repeating
    every day or week of 86 400 or 604 800 seconds; no daylight-saving shifts)."""
    offset = (now - starts_at).total_seconds()
    if offset < 0:
        return False
    if recurrence == "daily":
        offset %= 86400.0
    elif recurrence == "weekly":
        offset %= 604800.0
    return offset < duration_s


_BINARY = (("TiB", 1024.0**4), ("GiB", 1024.0**3), ("MiB", 1024.0**2), ("KiB", 1024.0))


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    magnitude = abs(value)
    digits = 1 if magnitude >= 100 else 2 if magnitude >= 1 else 3
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def format_value(value: float | None, unit: str) -> str:
    """A value for people: ``93.2%``, ``71.5 °C``, ``1.5 GiB``, ``3h 5m``."""
    if value is None or math.isnan(value):
        return "no value"
    if unit in ("percent", "%"):
        return f"{_number(value)}%"
    if unit in ("celsius", "degC", "°C"):
        return f"{_number(value)} °C"
    if unit in ("bytes", "B"):
        for suffix, size in _BINARY:
            if abs(value) >= size:
                return f"{_number(value / size)} {suffix}"
        return f"{_number(value)} B"
    if unit in ("bytes_per_second", "B/s"):
        return format_value(value, "bytes") + "/s"
    if unit in ("seconds", "s") and abs(value) >= 60:
        left = int(abs(value))
        parts = [(left // 86400, "d"), (left % 86400 // 3600, "h"), (left % 3600 // 60, "m")]
        shown = " ".join(f"{n}{u}" for n, u in parts if n)
        return ("-" if value < 0 else "") + shown
    if unit in ("seconds", "s"):
        return f"{_number(value)} s"
    if unit in ("per_second",):
        return f"{_number(value)}/s"
    return _number(value) + (f" {unit}" if unit else "")


def render(template: str, fields: dict[str, Any]) -> str:
    """Fill ``{key}`` placeholders from ``fields``; unknown keys stay as written. Only plain
    names: no attribute or index access, so a rule cannot reach into Python objects."""

    def one(m: re.Match[str]) -> str:
        value = fields.get(m[1])
        return m[0] if value is None else str(value)

    return _PLACEHOLDER.sub(one, template)


def redact_url(url: str) -> str:
    """A notification URL safe to show: scheme and host; user, password, path and query (where
    services put tokens: ``discord://id/token``, ``ntfy://user:pass@host/topic``) masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    netloc, slash, path = rest.partition("/")
    _, at, hostport = netloc.rpartition("@")
    shown = f"{scheme}://{'***@' if at else ''}{hostport}"
    return shown + ("/***" if path or slash else "")


# HTTP API bodies (``/api/v1/alerts``) ---------------------------------------------------------


class RuleInfo(msgspec.Struct, frozen=True):
    """A stored rule: ``source`` is ``api``, ``file`` or ``default`` (the default pack)."""

    rule: Rule
    source: str
    updated_at: datetime


class RuleList(msgspec.Struct, frozen=True):
    items: list[RuleInfo]


class ActiveAlert(msgspec.Struct, frozen=True):
    """An alert that is pending or firing (or, in a filtered list, resolved)."""

    id: int
    rule: str
    fingerprint: str
    state: AlertState
    severity: RuleSeverity
    labels: dict[str, str]
    value: float | None
    unit: str
    message: str
    since: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    last_notified_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None


class AlertList(msgspec.Struct, frozen=True):
    items: list[ActiveAlert]
    next_offset: int | None = None


class HistoryItem(msgspec.Struct, frozen=True):
    """One recorded state change; ``suppressed`` says why nobody was notified, if so."""

    id: int
    change_id: str
    rule: str
    fingerprint: str
    state: AlertState
    repeat: int
    severity: RuleSeverity
    value: float | None
    labels: dict[str, str]
    message: str
    suppressed: str | None
    ts: datetime


class HistoryList(msgspec.Struct, frozen=True):
    items: list[HistoryItem]
    next_offset: int | None = None


class SilenceBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Silence the alerts matching ``matchers`` (``{host="nas", rule="disk_space"}``) until
    ``ends_at``, or for ``duration_s`` from ``starts_at`` (default now)."""

    matchers: str
    ends_at: datetime | None = None
    duration_s: Annotated[float, msgspec.Meta(gt=0, le=365 * 86400)] | None = None
    starts_at: datetime | None = None
    comment: str = ""


class Silence(msgspec.Struct, frozen=True):
    id: int
    matchers: str
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    active: bool


class SilenceList(msgspec.Struct, frozen=True):
    items: list[Silence]


class MaintenanceBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A maintenance window: alerts matching ``matchers`` notify nobody while it is open.
    ``recurrence`` repeats it every day or week from ``starts_at`` (UTC)."""

    matchers: str
    starts_at: datetime
    duration_s: Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)]
    recurrence: Recurrence = "once"
    name: str = ""
    comment: str = ""


class Maintenance(msgspec.Struct, frozen=True):
    id: int
    name: str
    matchers: str
    starts_at: datetime
    duration_s: float
    recurrence: Recurrence
    comment: str
    active: bool


class MaintenanceList(msgspec.Struct, frozen=True):
    items: list[Maintenance]


class ChannelBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A notification channel: an Apprise URL (``ntfy://``, ``json://``, ``mailto://``, ...),
    routed the alerts of at least ``min_severity`` that match ``matchers``."""

    url: Annotated[str, msgspec.Meta(min_length=4, max_length=4000)]
    min_severity: RuleSeverity = "warning"
    matchers: str = ""
    enabled: bool = True


class Channel(msgspec.Struct, frozen=True):
    """A channel as shown: its URL with the secrets masked."""

    name: str
    url: str
    min_severity: RuleSeverity
    matchers: str
    enabled: bool
    updated_at: datetime


class ChannelList(msgspec.Struct, frozen=True):
    items: list[Channel]


class TestQueued(msgspec.Struct, frozen=True):
    """A test message is queued: its delivery appears under ``change_id``."""

    change_id: str


class Delivery(msgspec.Struct, frozen=True):
    """One notification of one change through one channel: ``sent``, ``failed`` (and why) or
    still ``pending`` (waiting to be grouped, or retrying)."""

    id: int
    change_id: str
    channel: str
    rule: str
    state: AlertState
    status: Literal["pending", "sent", "failed"]
    attempts: int
    error: str
    created_at: datetime
    sent_at: datetime | None


class DeliveryList(msgspec.Struct, frozen=True):
    items: list[Delivery]
    next_offset: int | None = None


def _rule(name: str, expr: str, **fields: Any) -> Rule:
    return Rule(name=name, expr=expr, **fields)


_V = "{host}: {name} is {value} (threshold {threshold})"
DEFAULT_RULES: Final[tuple[Rule, ...]] = (
    _rule(
        "host_silent",
        '{plugin=~"cpu|system|memory"}',
        kind="absence",
        by="host",
        for_s=180.0,
        severity="critical",
        message="{host} has sent no data for {for}",
        description="No data from a host's base plugins for 3 minutes.",
    ),
    _rule(
        "disk_space",
        'disk_used_percent{fstype!~"tmpfs|devtmpfs|squashfs|overlay"}',
        threshold=90.0,
        clear=85.0,
        for_s=300.0,
        message="{host}: disk {mount} is {value} full",
        description="A filesystem is over 90% full for 5 minutes.",
    ),
    _rule(
        "disk_space_critical",
        'disk_used_percent{fstype!~"tmpfs|devtmpfs|squashfs|overlay"}',
        threshold=97.0,
        clear=95.0,
        for_s=60.0,
        severity="critical",
        message="{host}: disk {mount} is {value} full",
    ),
    _rule(
        "inodes",
        "disk_inodes_used / disk_inodes_total",
        threshold=0.9,
        clear=0.85,
        for_s=300.0,
        message="{host}: {mount} uses {value} of its inodes (threshold {threshold})",
        description="A filesystem has used 90% of its inodes.",
    ),
    _rule(
        "memory",
        "avg(memory_used_percent[5m])",
        threshold=90.0,
        clear=85.0,
        for_s=300.0,
        message=_V,
    ),
    _rule(
        "swap",
        "avg(swap_used_percent[10m])",
        threshold=80.0,
        clear=70.0,
        for_s=600.0,
        message=_V,
    ),
    _rule(
        "cpu_sustained",
        'avg(rate(cpu_time_seconds{mode="idle"})[10m]) / cpu_cores_logical',
        op="<",
        threshold=0.1,
        clear=0.2,
        for_s=600.0,
        message="{host}: CPU idle only {value} of the time for 10 minutes",
        description="CPU over 90% busy (idle under 10%) for 10 minutes.",
    ),
    _rule(
        "load_per_core",
        "avg(cpu_load5[15m]) / cpu_cores_logical",
        threshold=2.0,
        clear=1.5,
        for_s=900.0,
        message="{host}: 5-minute load is {value} per core",
    ),
    _rule(
        "temperature",
        "avg(sensors_temperature_celsius[2m])",
        threshold=85.0,
        clear=80.0,
        for_s=120.0,
        severity="critical",
        message="{host}: {chip} {sensor} at {value}",
    ),
    _rule(
        "plugin_failing",
        "",
        kind="health",
        runs=3,
        message="{host}: plugin {plugin} failed {runs} runs in a row",
    ),
    _rule(
        "ingest_dlq_growing",
        "max(rate(ingest_dlq_total)[10m])",
        threshold=0.0,
        for_s=300.0,
        message="ingest on {host} sends {value} messages to the DLQ ({reason})",
    ),
    _rule(
        "consumer_lag",
        "avg(ingest_consumer_pending[5m])",
        threshold=100_000.0,
        clear=10_000.0,
        for_s=300.0,
        message="ingest on {host} lags {value} messages behind on {stream}",
    ),
    _rule(
        "smart_failing",
        '{kind=~"smart_.*fail.*|smart_failing"}',
        kind="event",
        severity="critical",
        hold_s=86400.0,
        message="{host}: {message}",
    ),
    _rule(
        "ups_on_battery",
        '{kind=~"on_battery|power_lost"}',
        kind="event",
        severity="critical",
        hold_s=3600.0,
        message="{host}: {message}",
    ),
    _rule(
        "raid_degraded",
        '{kind=~"raid_degraded|md_degraded"}',
        kind="event",
        severity="critical",
        hold_s=86400.0,
        message="{host}: {message}",
    ),
)
