"""What the evaluator keeps in PostgreSQL: rules, alert state, history and the delivery outbox.

State rows are upserted before a change is published, so a restarted evaluator knows every
alert that was pending or firing and continues its episode (same change ids). Two evaluators
write the same rows: a state never moves back (pending < firing < resolved).

History and deliveries are written by whichever evaluator receives the change from the shared
``alerts-notify`` consumer: the history row is unique per change id, so a change that arrives
twice (a redelivery, a republish after a crash) is recorded and routed once.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec

from unity.ingest.alerts.engine import STALE_S, Engine, LoadedRule, Restored
from unity.schemas.alerts import (
    SEVERITY_RANK,
    AlertChange,
    Expression,
    Rule,
    RuleError,
    RuleFile,
    Selector,
    in_window,
    parse_selector,
)

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()
_RANK = "CASE {} WHEN 'pending' THEN 0 WHEN 'firing' THEN 1 ELSE 2 END"


class RuleFileError(ValueError):
    """A rule file cannot be used; the message names the file and the key or rule."""


def read_rule_file(path: str | Path) -> list[Rule]:
    """Rules of a TOML file (``[[rule]]`` tables); unknown keys are refused with their path."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RuleFileError(f"cannot read rule file {path}: {exc}") from None
    try:
        rules = msgspec.convert(raw, RuleFile).rule
    except msgspec.ValidationError as exc:
        raise RuleFileError(f"rule file {path}: {exc}") from None
    for rule in rules:
        try:
            rule.check()
        except RuleError as exc:
            raise RuleFileError(f"rule file {path}, rule {rule.name!r}: {exc}") from None
    return rules


async def store_rules(
    db: asyncpg.Pool | asyncpg.Connection, rules: Iterable[Rule], source: str, replace: bool
) -> None:
    """Defaults are added once (later edits win); rule files replace their rules each start."""
    action = (
        "DO UPDATE SET selector = EXCLUDED.selector, condition = EXCLUDED.condition,"
        " for_s = EXCLUDED.for_s, severity = EXCLUDED.severity, enabled = EXCLUDED.enabled,"
        " kind = EXCLUDED.kind, spec = EXCLUDED.spec, source = EXCLUDED.source,"
        " updated_at = now()"
        if replace
        else "DO NOTHING"
    )
    await db.executemany(
        "INSERT INTO alert_rules (name, selector, condition, for_s, severity, enabled, kind,"  # noqa: S608 -- constant text
        f" spec, source) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8::jsonb, $9)"
        f" ON CONFLICT (name) {action}",
        [
            (
                r.name,
                r.expr,
                _json.encode({"op": r.op, "threshold": r.threshold, "clear": r.clear}).decode(),
                r.for_s,
                r.severity,
                r.enabled,
                r.kind,
                _json.encode(r).decode(),
                source,
            )
            for r in rules
        ],
    )


async def rules_version(db: asyncpg.Pool) -> tuple[int, datetime | None]:
    row = await db.fetchrow("SELECT count(*) AS n, max(updated_at) AS at FROM alert_rules")
    assert row is not None
    return row["n"], row["at"]


async def load_rules(db: asyncpg.Pool) -> list[LoadedRule]:
    """The stored rules; one that no longer parses is logged and left out, never fatal."""
    loaded: list[LoadedRule] = []
    for row in await db.fetch("SELECT id, name, spec::text AS spec FROM alert_rules"):
        try:
            rule = msgspec.json.decode(row["spec"], type=Rule)
            loaded.append(LoadedRule(row["id"], rule, rule.check()))
        except (msgspec.ValidationError, RuleError) as exc:
            log.error("rule %r is skipped: %s", row["name"], exc)
    return loaded


async def restore(db: asyncpg.Pool) -> list[Restored]:
    rows = await db.fetch(
        "SELECT rule, fingerprint, episode, state, coalesce(fired_at, started_at) AS since,"
        " labels::text AS labels, value, unit, repeats FROM alerts WHERE state <> 'resolved'"
    )
    return [
        Restored(
            r["rule"],
            r["fingerprint"],
            r["episode"],
            r["state"],
            r["since"].timestamp(),
            msgspec.json.decode(r["labels"]),
            r["value"],
            r["unit"],
            r["repeats"],
        )
        for r in rows
    ]


async def sources(db: asyncpg.Pool) -> list[tuple[str, str, str]]:
    """Sources seen within a day: absence rules start their clock on them at start."""
    rows = await db.fetch(
        "SELECT DISTINCT host, plugin, instance FROM series"
        " WHERE last_seen > now() - interval '1 day'"
    )
    return [(r["host"], r["plugin"], r["instance"]) for r in rows]


def selector_sql(selector: Selector) -> tuple[str, list[str]]:
    """A WHERE fragment over ``series s`` for a selector, every value a parameter."""
    parts: list[str] = []
    params: list[str] = []
    for m in selector.matchers:
        if m.key in ("host", "plugin", "instance", "name"):
            column = f"s.{m.key}"
        else:
            params.append(m.key)
            column = f"coalesce(s.labels ->> ${len(params)}, '')"
        if m.pattern is not None:
            params.append(f"^(?:{m.value})$")
            op = "~" if m.op == "=~" else "!~"
        else:
            params.append(m.value)
            op = "=" if m.op == "=" else "<>"
        parts.append(f"{column} {op} ${len(params)}")
    return " AND ".join(parts) or "TRUE", params


async def warm(db: asyncpg.Pool, engine: Engine, now: float) -> int:
    """Refill the windows and counters of threshold rules from the stored samples of their
    last window (a rate needs one point before it); the number of points read."""
    read = 0
    for r in list(engine.rules.values()):
        expr = r.parsed
        if not isinstance(expr, Expression) or not (expr.window or expr.rate):
            continue
        where, params = selector_sql(expr.selector)
        since = now - (expr.window.seconds if expr.window else 0.0) - STALE_S
        n = len(params)
        rows = await db.fetch(
            "SELECT s.host, s.plugin, s.instance, s.name, s.labels::text AS labels, s.unit,"  # noqa: S608 -- values are bind parameters
            " date_part('epoch', p.time) AS t, p.value FROM samples p"
            f" JOIN series s ON s.id = p.series_id WHERE {where} AND p.time >= ${n + 1}"
            " ORDER BY p.time",
            *params,
            _at(since),
        )
        for row in rows:
            labels: dict[str, str] = msgspec.json.decode(row["labels"])
            fields = {
                **labels,
                "host": row["host"],
                "plugin": row["plugin"],
                "instance": row["instance"],
                "name": row["name"],
            }
            engine.warm(r.name, fields, row["unit"], row["t"], row["value"])
        read += len(rows)
    return read


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def save_states(
    db: asyncpg.Pool, changes: list[AlertChange], rule_ids: dict[str, int]
) -> None:
    """Upsert each change's alert row; a state never moves back."""
    rows = []
    for c in changes:
        episode_at = _at(c.episode / 1000)
        rows.append(
            (
                rule_ids[c.rule],
                c.rule,
                c.fingerprint,
                c.episode,
                c.state,
                c.value,
                episode_at,
                _at(c.since) if c.state == "firing" and not c.repeat else None,
                _at(c.ts) if c.state == "resolved" else None,
                _json.encode(c.labels).decode(),
                c.severity,
                c.unit,
                c.message,
                c.repeat,
            )
        )
    await db.executemany(
        "INSERT INTO alerts (rule_id, rule, fingerprint, episode, state, value, started_at,"  # noqa: S608 -- constant text
        " fired_at, resolved_at, labels, severity, unit, message, repeats)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14)"
        " ON CONFLICT (rule_id, fingerprint, episode) DO UPDATE SET"
        " state = EXCLUDED.state, value = EXCLUDED.value, message = EXCLUDED.message,"
        " fired_at = coalesce(alerts.fired_at, EXCLUDED.fired_at),"
        " resolved_at = coalesce(alerts.resolved_at, EXCLUDED.resolved_at),"
        " repeats = greatest(alerts.repeats, EXCLUDED.repeats), updated_at = now()"
        f" WHERE {_RANK.format('alerts.state')} <= {_RANK.format('EXCLUDED.state')}",
        rows,
    )


async def _quiet(
    conn: asyncpg.Connection, change: AlertChange, inhibitors: set[str], now: datetime
) -> str | None:
    """Why nobody is told about this change, or None."""
    if change.state == "pending":
        return "pending"
    if change.state == "resolved":
        key = (change.rule, change.fingerprint, change.episode)
        firing = await conn.fetchrow(
            "SELECT suppressed FROM alert_history WHERE rule = $1 AND fingerprint = $2"
            " AND episode = $3 AND state = 'firing' AND repeat = 0",
            *key,
        )
        if firing is None:
            # Its firing may still be on its way (held by an evaluator that died): the alert's
            # own row says whether it fired.
            fired = await conn.fetchval(
                "SELECT fired_at FROM alerts WHERE rule = $1 AND fingerprint = $2 AND episode = $3",
                *key,
            )
            if fired is None:
                return "never fired"
        elif firing["suppressed"] is not None:
            return "its firing was not notified"
    if change.repeat:
        acked = await conn.fetchval(
            "SELECT acked_at FROM alerts WHERE rule = $1 AND fingerprint = $2 AND episode = $3",
            change.rule,
            change.fingerprint,
            change.episode,
        )
        if acked is not None:
            return "acknowledged"
    for row in await conn.fetch(
        "SELECT id, matchers FROM alert_silences WHERE starts_at <= $1 AND ends_at > $1", now
    ):
        if _matches(row["matchers"], change.labels):
            return f"silence {row['id']}"
    for row in await conn.fetch(
        "SELECT id, matchers, starts_at, duration_s, recurrence FROM alert_maintenance"
    ):
        open_now = in_window(now, row["starts_at"], row["duration_s"], row["recurrence"])
        if open_now and _matches(row["matchers"], change.labels):
            return f"maintenance {row['id']}"
    host = change.labels.get("host", "")
    if inhibitors and change.rule not in inhibitors and host:
        silent = await conn.fetchval(
            "SELECT rule FROM alerts WHERE state = 'firing' AND rule = ANY($1::text[])"
            " AND labels ->> 'host' = $2 LIMIT 1",
            sorted(inhibitors),
            host,
        )
        if silent is not None:
            return f"inhibited by {silent}"
    return None


def _matches(matchers: str, labels: dict[str, str]) -> bool:
    try:
        return parse_selector(matchers).matches(labels)
    except RuleError:
        return False


async def record(
    db: asyncpg.Pool, changes: list[AlertChange], inhibitors: set[str], group_wait: float
) -> int:
    """Store changes in history and queue their deliveries, in one transaction: the changes of
    one fetch become visible to the sender together, so a group is never cut in two by the
    time it took to record it. The number of deliveries queued."""
    now = datetime.now(UTC)
    async with db.acquire() as conn, conn.transaction():
        return sum([await _record(conn, c, inhibitors, group_wait, now) for c in changes])


async def _record(
    conn: asyncpg.Connection,
    change: AlertChange,
    inhibitors: set[str],
    group_wait: float,
    now: datetime,
) -> int:
    """One change: its history row, then its deliveries (0 when seen before or quiet)."""
    inserted = await conn.fetchval(
        "INSERT INTO alert_history (change_id, rule, fingerprint, episode, state, repeat,"
        " severity, value, labels, message, ts) VALUES"
        " ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11)"
        " ON CONFLICT (change_id) DO NOTHING RETURNING id",
        change.id,
        change.rule,
        change.fingerprint,
        change.episode,
        change.state,
        change.repeat,
        change.severity,
        change.value,
        _json.encode(change.labels).decode(),
        change.message,
        _at(change.ts),
    )
    if inserted is None:
        return 0
    why = await _quiet(conn, change, inhibitors, now)
    if why is not None:
        await conn.execute("UPDATE alert_history SET suppressed = $2 WHERE id = $1", inserted, why)
        return 0
    channels = [
        row["id"]
        for row in await conn.fetch(
            "SELECT id, min_severity, matchers FROM alert_channels WHERE enabled"
        )
        if SEVERITY_RANK[change.severity] >= SEVERITY_RANK[row["min_severity"]]
        and _matches(row["matchers"], change.labels)
    ]
    group = f"{change.rule}|{change.labels.get('host', '')}|{change.state}|{change.repeat}"
    await conn.executemany(
        # A group goes out when its first member's wait is over: later members join it.
        "INSERT INTO alert_deliveries (change_id, channel_id, group_key, next_attempt_at)"
        " SELECT $1, $2, $3, coalesce((SELECT min(next_attempt_at) FROM alert_deliveries"
        " WHERE channel_id = $2 AND group_key = $3 AND status = 'pending'"
        " AND attempts = 0), now() + make_interval(secs => $4))"
        " ON CONFLICT DO NOTHING",
        [(change.id, channel, group, group_wait) for channel in channels],
    )
    if channels:
        await conn.execute(
            "UPDATE alerts SET last_notified_at = now() WHERE rule = $1 AND fingerprint = $2"
            " AND episode = $3",
            change.rule,
            change.fingerprint,
            change.episode,
        )
    return len(channels)
