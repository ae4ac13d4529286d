"""The rule state machine, without I/O: messages and clock ticks in, state changes out.

Time is passed in (``now``), so tests control it. Three clocks matter:

- a sample's own time (``data``) orders window points and starts a threshold episode;
- the time its message reached the stream (``ingest``) is what absence rules judge: a source is
  alive when fresh data arrives, whatever the data's own timestamps say;
- ``now`` (the wall clock in the service) runs the timers: ``for``, absence, event hold,
  repeat.

Data that arrives long after it was measured (a spool draining, an import of old data) feeds
neither threshold nor absence rules: its sample time lies further behind its ingest time than
the rule looks back (``STALE_S`` past a window), so it neither fires nor resolves anything.

Every change carries an id computed from the rule, the alert's fingerprint, the episode (the
data time, in milliseconds, at which the condition began) and the new state: two evaluators
reading the same stream compute the same ids, and JetStream keeps one message per id.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from unity.schemas import Event, HealthReport, MetricBatch, epoch, token
from unity.schemas.alerts import (
    AlertChange,
    AlertState,
    Expression,
    Rule,
    Selector,
    format_value,
    render,
)

# How far a threshold sample may lag its ingest time beyond the rule's window and still count.
STALE_S = 300.0


@dataclass(frozen=True, slots=True)
class LoadedRule:
    id: int
    rule: Rule
    parsed: Expression | Selector

    @property
    def name(self) -> str:
        return self.rule.name


@dataclass(slots=True)
class Alert:
    """What the engine knows of one alert of one rule."""

    rule: LoadedRule
    fingerprint: str
    labels: dict[str, str]
    unit: str = ""
    state: AlertState | None = None
    episode: int = 0
    since: float = 0.0
    deadline: float = 0.0
    value: float | None = None
    breached: bool = False
    repeats: int = 0
    # Rates and windows: the previous counter reading and the window's points.
    counter: tuple[float, float] | None = None
    points: deque[tuple[float, float]] = field(default_factory=deque)
    total: float = 0.0
    extreme: deque[tuple[float, float]] = field(default_factory=deque)
    last_data: float = 0.0
    # Absence: newest ingest time of fresh data; health: bad runs in a row; event: hold until.
    seen: float = 0.0
    bad_runs: int = 0
    hold_until: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Restored:
    """An alert that was pending or firing when the evaluator stopped."""

    rule: str
    fingerprint: str
    episode: int
    state: AlertState
    since: float
    labels: dict[str, str]
    value: float | None
    unit: str
    repeats: int


def fingerprint(rule: str, identity: Iterable[tuple[str, str]]) -> str:
    text = msgspec.json.encode([rule, sorted(identity)])
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def _fields(
    host: str, plugin: str, instance: str, name: str, labels: dict[str, str]
) -> dict[str, str]:
    return {**labels, "host": host, "plugin": plugin, "instance": instance, "name": name}


class Engine:
    def __init__(self, rules: Iterable[LoadedRule] = ()) -> None:
        self.alerts: dict[tuple[str, str], Alert] = {}
        self.rules: dict[str, LoadedRule] = {}
        # Threshold rules by the metric name they pin, then by the host they pin (None: any):
        # a sample is checked against the few rules that can match it, not all of them.
        self._by_name: dict[str, dict[str | None, list[LoadedRule]]] = {}
        self._unnamed: list[LoadedRule] = []
        self._absence: list[LoadedRule] = []
        self._health: list[LoadedRule] = []
        self._event: list[LoadedRule] = []
        self._divisors: set[str] = set()
        self._latest: dict[tuple[str, str, str, str, tuple[tuple[str, str], ...]], float] = {}
        self.evaluations = 0
        self.set_rules(rules)

    def set_rules(self, rules: Iterable[LoadedRule], now: float = 0.0) -> list[AlertChange]:
        """Replace the rules. Alerts of a changed or switched-off rule end: those pending or
        firing resolve (a changed rule's alerts start again from its new definition)."""
        new = {r.name: r for r in rules if r.rule.enabled}
        ended: list[AlertChange] = []
        for key, alert in list(self.alerts.items()):
            if new.get(key[0]) != alert.rule:
                if alert.state is not None:
                    ended.append(self._change(alert, "resolved", now or alert.since))
                del self.alerts[key]
        self.rules = new
        self._by_name, self._unnamed = {}, []
        self._absence, self._health, self._event = [], [], []
        self._divisors = set()
        for r in new.values():
            if r.rule.kind == "absence":
                self._absence.append(r)
            elif r.rule.kind == "health":
                self._health.append(r)
            elif r.rule.kind == "event":
                self._event.append(r)
            else:
                assert isinstance(r.parsed, Expression)
                name = r.parsed.selector.equal("name")
                if name is None:
                    self._unnamed.append(r)
                else:
                    host = r.parsed.selector.equal("host")
                    self._by_name.setdefault(name, {}).setdefault(host, []).append(r)
                if r.parsed.divisor:
                    self._divisors.add(r.parsed.divisor)
        return ended

    def restore(self, states: Iterable[Restored]) -> None:
        for s in states:
            r = self.rules.get(s.rule)
            if r is None:
                continue
            alert = Alert(r, s.fingerprint, s.labels, s.unit, s.state, s.episode, s.since)
            alert.value, alert.repeats = s.value, s.repeats
            alert.breached = True
            alert.deadline = s.episode / 1000 + r.rule.for_s
            alert.seen = s.since
            self.alerts[(s.rule, s.fingerprint)] = alert

    # Metrics ---------------------------------------------------------------------------

    def on_batch(self, batch: MetricBatch, ingest: float, now: float) -> list[AlertChange]:
        host, plugin, instance = token(batch.host), token(batch.plugin), batch.instance
        batch_ts = epoch(batch.ts) if batch.ts is not None else ingest
        changes: list[AlertChange] = []
        if self._divisors:
            for s in batch.samples:
                if s.name in self._divisors:
                    key = (host, plugin, instance, s.name, tuple(sorted(s.labels.items())))
                    self._latest[key] = s.value
        for r in self._absence:
            changes += self._alive(r, host, plugin, instance, batch, batch_ts, ingest, now)
        for s in batch.samples:
            by_host = self._by_name.get(s.name)
            if by_host is None and not self._unnamed:
                continue
            rules = [*by_host.get(host, ()), *by_host.get(None, ())] if by_host else []
            if not rules and not self._unnamed:
                continue
            data = epoch(s.ts) if s.ts is not None else batch_ts
            fields = _fields(host, plugin, instance, s.name, s.labels)
            for r in (*rules, *self._unnamed):
                assert isinstance(r.parsed, Expression)
                expr = r.parsed
                window = expr.window.seconds if expr.window else 0.0
                if ingest - data > window + STALE_S or not expr.selector.matches(fields):
                    continue
                self.evaluations += 1
                alert = self._alert(r, fields, s.unit)
                value = self._value(alert, expr, s.value, data, fields)
                if value is not None:
                    changes += self._step(alert, value, data, now)
        return changes

    def warm(self, rule: str, fields: dict[str, str], unit: str, data: float, raw: float) -> None:
        """Feed a stored point into a rule's window or rate without judging it: after a start
        the windows hold what they held before, so a restart neither resolves nor fires on
        the few points that arrived since."""
        r = self.rules.get(rule)
        if r is None or not isinstance(r.parsed, Expression):
            return
        alert = self._alert(r, fields, unit)
        value = self._value(alert, r.parsed, raw, data, fields)
        if value is not None:
            alert.value = value
            alert.breached = r.rule.breached(value)

    def _alert(self, r: LoadedRule, fields: dict[str, str], unit: str = "") -> Alert:
        fp = fingerprint(r.name, fields.items())
        alert = self.alerts.get((r.name, fp))
        if alert is None:
            labels = {**fields, **r.rule.labels, "rule": r.name, "severity": r.rule.severity}
            alert = self.alerts[(r.name, fp)] = Alert(r, fp, labels, unit)
        elif unit:
            alert.unit = unit
        return alert

    def _value(
        self, alert: Alert, expr: Expression, raw: float, data: float, fields: dict[str, str]
    ) -> float | None:
        if data <= alert.last_data:
            # Seen already: a redelivery, or a point the warm-up read from the database.
            return None
        alert.last_data = data
        value: float | None = raw
        if expr.rate:
            previous, alert.counter = alert.counter, (data, raw)
            if previous is None:
                return None
            # A drop is a counter reset: the increase counts from zero.
            increase = raw - previous[1] if raw >= previous[1] else raw
            value = increase / (data - previous[0])
        if expr.window is not None:
            assert value is not None
            points = alert.points
            points.append((data, value))
            alert.total += value
            while points[0][0] <= data - expr.window.seconds:
                alert.total -= points.popleft()[1]
            if len(points) == 1:
                alert.total = value  # rounding left by the removed points goes with them
            fn = expr.window.function
            if fn == "avg":
                # A running sum: a window of thousands of points costs no more than one of six.
                value = alert.total / len(points)
            elif fn in ("min", "max"):
                # A monotonic queue: its head is the window's extreme, each point enters and
                # leaves it once.
                extreme, sign = alert.extreme, 1.0 if fn == "min" else -1.0
                while extreme and sign * extreme[-1][1] >= sign * value:
                    extreme.pop()
                extreme.append((data, value))
                while extreme[0][0] <= data - expr.window.seconds:
                    extreme.popleft()
                value = extreme[0][1]
        if expr.divisor:
            host, plugin, instance = fields["host"], fields["plugin"], fields["instance"]
            labels = tuple(sorted((k, v) for k, v in fields.items() if k not in _COLUMNS))
            divisor = self._latest.get((host, plugin, instance, expr.divisor, labels))
            if divisor is None:
                divisor = self._latest.get((host, plugin, instance, expr.divisor, ()))
            if not divisor:
                return None
            assert value is not None
            value /= divisor
        return value

    def _step(self, alert: Alert, value: float, data: float, now: float) -> list[AlertChange]:
        rule = alert.rule.rule
        alert.value = value
        alert.breached = rule.breached(value)
        if alert.state is None:
            if not alert.breached:
                return []
            alert.episode = round(data * 1000)
            alert.deadline = data + rule.for_s
            alert.repeats = 0
            if rule.for_s <= 0:
                return [self._change(alert, "firing", data)]
            return [self._change(alert, "pending", data)]
        if alert.state == "pending":
            if not alert.breached:
                return [self._change(alert, "resolved", data)]
            if max(data, now) >= alert.deadline:
                return [self._change(alert, "firing", alert.deadline)]
            return []
        if rule.cleared(value):
            return [self._change(alert, "resolved", data)]
        return []

    # Absence, health and events ------------------------------------------------------------

    def _alive(
        self,
        r: LoadedRule,
        host: str,
        plugin: str,
        instance: str,
        batch: MetricBatch | None,
        data: float,
        ingest: float,
        now: float,
    ) -> list[AlertChange]:
        rule = r.rule
        # Old data arriving now (a spool, an import) says nothing about the source being alive.
        if ingest - data > rule.for_s:
            return []
        assert isinstance(r.parsed, Selector)
        if rule.by == "series":
            if batch is None:
                return []
            out: list[AlertChange] = []
            for s in batch.samples:
                fields = _fields(host, plugin, instance, s.name, s.labels)
                if r.parsed.matches(fields):
                    out += self._seen(self._alert(r, fields, s.unit), ingest)
            return out
        fields = {"host": host, "plugin": plugin, "instance": instance}
        if not _source_matches(r.parsed, fields):
            return []
        identity = {"host": host} if rule.by == "host" else fields
        return self._seen(self._alert(r, identity), ingest)

    def _seen(self, alert: Alert, ingest: float) -> list[AlertChange]:
        if ingest <= alert.seen:
            return []
        alert.seen = ingest
        if alert.state == "firing":
            return [self._change(alert, "resolved", ingest)]
        return []

    def watch(self, host: str, plugin: str, instance: str, since: float) -> None:
        """Start the absence clock of a source known to exist (at start, from the catalogue)."""
        for r in self._absence:
            if r.rule.by == "series":
                continue
            fields = {"host": host, "plugin": plugin, "instance": instance}
            assert isinstance(r.parsed, Selector)
            if _source_matches(r.parsed, fields):
                alert = self._alert(r, {"host": host} if r.rule.by == "host" else fields)
                alert.seen = max(alert.seen, since)

    def on_health(self, report: HealthReport, ingest: float, now: float) -> list[AlertChange]:
        host, plugin, instance = token(report.host), token(report.plugin), report.instance
        data = epoch(report.ts) if report.ts is not None else ingest
        changes: list[AlertChange] = []
        for r in self._absence:
            changes += self._alive(r, host, plugin, instance, None, data, ingest, now)
        fields = {"host": host, "plugin": plugin, "instance": instance, "status": report.status}
        for r in self._health:
            assert isinstance(r.parsed, Selector)
            if ingest - data > STALE_S or not r.parsed.matches(fields):
                continue
            identity = {"host": host, "plugin": plugin, "instance": instance}
            alert = self._alert(r, identity)
            alert.extra = {"status": report.status, "message": report.message}
            if report.status in r.rule.statuses:
                alert.bad_runs += 1
                if alert.bad_runs == 1:
                    alert.episode = round(data * 1000)
                if alert.state is None and alert.bad_runs >= r.rule.runs:
                    alert.repeats = 0
                    changes.append(self._change(alert, "firing", data))
            else:
                alert.bad_runs = 0
                if alert.state == "firing":
                    changes.append(self._change(alert, "resolved", data))
        return changes

    def on_event(self, event: Event, ingest: float, now: float) -> list[AlertChange]:
        host, plugin, instance = token(event.host), token(event.plugin), event.instance
        data = epoch(event.ts) if event.ts is not None else ingest
        changes: list[AlertChange] = []
        if ingest - data > STALE_S:
            return changes
        fields = {
            "host": host,
            "plugin": plugin,
            "instance": instance,
            "kind": event.kind,
            "name": event.kind,
            "severity": event.severity,
        }
        fields |= {k: v for k, v in event.data.items() if isinstance(v, str) and k not in fields}
        for r in self._event:
            assert isinstance(r.parsed, Selector)
            if not r.parsed.matches(fields):
                continue
            identity = {"host": host, "plugin": plugin, "instance": instance, "kind": event.kind}
            alert = self._alert(r, identity)
            alert.extra = {"message": event.message, "event_severity": event.severity}
            alert.hold_until = max(alert.hold_until, ingest + r.rule.hold_s)
            if alert.state is None:
                alert.episode = round(data * 1000)
                alert.repeats = 0
                changes.append(self._change(alert, "firing", data))
        return changes

    # Timers ------------------------------------------------------------------------------

    def tick(self, now: float, caught_up: bool = True) -> list[AlertChange]:
        """Timers: ``for`` elapsed, sources silent, event holds over, reminders due. Absence is
        judged only once the stream is caught up: a backlog is not a silence."""
        changes: list[AlertChange] = []
        for alert in list(self.alerts.values()):
            rule = alert.rule.rule
            if rule.kind == "absence":
                silent = alert.seen > 0 and now - alert.seen >= rule.for_s
                if caught_up and silent and alert.state is None:
                    alert.episode = round((alert.seen + rule.for_s) * 1000)
                    alert.repeats = 0
                    changes.append(self._change(alert, "firing", alert.seen + rule.for_s))
            elif rule.kind == "event":
                if alert.state == "firing" and now >= alert.hold_until > 0:
                    changes.append(self._change(alert, "resolved", alert.hold_until))
            elif alert.state == "pending" and alert.breached and now >= alert.deadline:
                changes.append(self._change(alert, "firing", alert.deadline))
            if alert.state == "firing" and rule.repeat_s > 0:
                due = int((now - alert.since) // rule.repeat_s)
                if due > alert.repeats:
                    alert.repeats = due
                    changes.append(self._change(alert, "firing", now, repeat=due))
        return changes

    def announce(self, alert: Alert) -> AlertChange:
        """The change that put ``alert`` in its current state, again (same id)."""
        assert alert.state is not None
        return self._change(alert, alert.state, alert.since)

    def _change(self, alert: Alert, state: AlertState, at: float, repeat: int = 0) -> AlertChange:
        rule = alert.rule.rule
        if not repeat:
            alert.state = None if state == "resolved" else state
            alert.since = at
        suffix = f":r{repeat}" if repeat else ""
        shown = {
            **alert.labels,
            **alert.extra,
            "rule": rule.name,
            "state": state,
            "value": format_value(alert.value, alert.unit),
            "threshold": format_value(rule.threshold, alert.unit),
            "clear": format_value(rule.threshold if rule.clear is None else rule.clear, alert.unit),
            "for": format_value(rule.for_s, "seconds"),
            "runs": str(rule.runs),
        }
        default = _DEFAULT_MESSAGES.get(rule.kind, "{rule} {state} on {host}")
        return AlertChange(
            id=f"{rule.name}:{alert.fingerprint}:{alert.episode}:{state}{suffix}",
            rule=rule.name,
            fingerprint=alert.fingerprint,
            episode=alert.episode,
            state=state,
            severity=rule.severity,
            labels=alert.labels,
            value=alert.value,
            unit=alert.unit,
            threshold=rule.threshold if rule.kind == "threshold" else None,
            message=render(rule.message or default, shown),
            ts=at,
            since=alert.since,
            repeat=repeat,
        )


_COLUMNS = frozenset(("host", "plugin", "instance", "name"))
_DEFAULT_MESSAGES = {
    "threshold": "{host}: {name} is {value} (threshold {threshold})",
    "health": "{host}: plugin {plugin} is {status}: {message}",
    "event": "{host}: {message}",
}


def _source_matches(selector: Selector, fields: dict[str, str]) -> bool:
    """Per source (host, plugin, instance) only the matchers on those keys apply."""
    return all(m.matches(fields[m.key]) for m in selector.matchers if m.key in fields)
