"""``/alerts``: rules (CRUD, validated), active alerts, history, acknowledgement, live changes.

Silences, maintenance windows, channels and deliveries are in ``alerts_admin``. The evaluator
(``unity alerts``) reads the rules from PostgreSQL and writes the alerts and their history;
the API only reads those, except for acknowledgements.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from unity.api.errors import ApiError
from unity.api.latest import PAGE
from unity.api.operation import Operation, Param, read_body
from unity.api.params import TIME_FORMATS, TIME_SCHEMA, parse_page, parse_time
from unity.api.responses import MsgspecResponse
from unity.api.rows import from_row
from unity.api.state import state_of
from unity.schemas.alerts import (
    ALERT_STATES,
    ActiveAlert,
    AlertList,
    HistoryItem,
    HistoryList,
    Rule,
    RuleError,
    RuleInfo,
    RuleList,
    parse_selector,
)

TAG = "alerts"
NAME = Param("name", "path", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"})
ID = Param("id", "path", {"type": "integer", "minimum": 1})
STREAM_QUEUE = 256

_rule_json = msgspec.json.Encoder()


def checked_rule(rule: Rule) -> Rule:
    """The rule, or a 400 naming what is wrong (and where, for an expression)."""
    try:
        rule.check()
    except RuleError as exc:
        raise ApiError(400, "bad_expression", str(exc)) from None
    return rule


def matchers_of(text: str, name: str = "matchers") -> str:
    try:
        parse_selector(text)
    except RuleError as exc:
        raise ApiError(400, "bad_matchers", f"{name}: {exc}") from None
    return text


def _text(q: Any, key: str) -> str | None:
    value = q.get(key)
    if value is None or value == "":
        return None
    if "\x00" in value:
        raise ApiError(400, "bad_parameter", f"{key} contains a NUL character")
    return str(value)


async def store_rule(
    db: asyncpg.Pool | asyncpg.Connection, rule: Rule, source: str, replace: bool
) -> tuple[bool, datetime]:
    """Insert (or, with ``replace``, upsert) a rule; (created, updated_at)."""
    condition = {"op": rule.op, "threshold": rule.threshold, "clear": rule.clear}
    conflict = (
        "DO UPDATE SET selector = EXCLUDED.selector, condition = EXCLUDED.condition,"
        " for_s = EXCLUDED.for_s, severity = EXCLUDED.severity, enabled = EXCLUDED.enabled,"
        " kind = EXCLUDED.kind, spec = EXCLUDED.spec, updated_at = now()"
        if replace
        else "DO NOTHING"
    )
    row = await db.fetchrow(
        "INSERT INTO alert_rules (name, selector, condition, for_s, severity, enabled, kind,"  # noqa: S608 -- no values in the text
        " spec, source) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8::jsonb, $9)"
        f" ON CONFLICT (name) {conflict} RETURNING (xmax = 0) AS created, updated_at",
        rule.name,
        rule.expr,
        _rule_json.encode(condition).decode(),
        rule.for_s,
        rule.severity,
        rule.enabled,
        rule.kind,
        _rule_json.encode(rule).decode(),
        source,
    )
    if row is None:
        raise ApiError(409, "exists", f"rule {rule.name!r} exists; PUT replaces it")
    return bool(row["created"]), row["updated_at"]


def _rule_info(row: asyncpg.Record) -> RuleInfo:
    rule = msgspec.json.decode(row["spec"], type=Rule)
    return RuleInfo(rule, row["source"], row["updated_at"])


async def list_rules(request: Request) -> Response:
    st = state_of(request)
    rows = await st.pool.fetch(
        "SELECT spec::text AS spec, source, updated_at FROM alert_rules ORDER BY name"
    )
    return MsgspecResponse(RuleList([_rule_info(r) for r in rows]))


async def get_rule(request: Request) -> Response:
    st = state_of(request)
    row = await st.pool.fetchrow(
        "SELECT spec::text AS spec, source, updated_at FROM alert_rules WHERE name = $1",
        request.path_params["name"],
    )
    if row is None:
        raise ApiError(404, "not_found", f"no rule {request.path_params['name']!r}")
    return MsgspecResponse(_rule_info(row))


async def create_rule(request: Request) -> Response:
    st = state_of(request)
    rule = checked_rule(await read_body(request, Rule))
    _, updated = await store_rule(st.pool, rule, "api", replace=False)
    return MsgspecResponse(RuleInfo(rule, "api", updated), status_code=201)


async def put_rule(request: Request) -> Response:
    st = state_of(request)
    rule = checked_rule(await read_body(request, Rule))
    if rule.name != request.path_params["name"]:
        raise ApiError(400, "name_mismatch", "the body's name differs from the path's")
    created, updated = await store_rule(st.pool, rule, "api", replace=True)
    source = await st.pool.fetchval("SELECT source FROM alert_rules WHERE name = $1", rule.name)
    return MsgspecResponse(RuleInfo(rule, source, updated), status_code=201 if created else 200)


async def _switch(request: Request, enabled: bool) -> Response:
    st = state_of(request)
    row = await st.pool.fetchrow(
        "UPDATE alert_rules SET enabled = $2,"
        " spec = jsonb_set(spec, '{enabled}', to_jsonb($2::boolean)), updated_at = now()"
        " WHERE name = $1 RETURNING spec::text AS spec, source, updated_at",
        request.path_params["name"],
        enabled,
    )
    if row is None:
        raise ApiError(404, "not_found", f"no rule {request.path_params['name']!r}")
    return MsgspecResponse(_rule_info(row))


async def enable_rule(request: Request) -> Response:
    return await _switch(request, True)


async def disable_rule(request: Request) -> Response:
    return await _switch(request, False)


async def delete_rule(request: Request) -> Response:
    st = state_of(request)
    name = request.path_params["name"]
    # A default rule comes back at the next start: switch it off instead.
    done = await st.pool.fetchval(
        "DELETE FROM alert_rules WHERE name = $1 AND source <> 'default' RETURNING 1", name
    )
    if done is None:
        source = await st.pool.fetchval("SELECT source FROM alert_rules WHERE name = $1", name)
        if source == "default":
            raise ApiError(409, "default_rule", f"{name!r} is a default rule: set enabled=false")
        raise ApiError(404, "not_found", f"no rule {name!r}")
    return Response(status_code=204)


_ALERT_COLUMNS = (
    "id, rule, fingerprint, state, severity, labels::text AS labels, value, unit, message,"
    " started_at AS since, fired_at, resolved_at, last_notified_at, acked_at, acked_by"
)


async def active(request: Request) -> Response:
    """Pending and firing alerts (``state`` picks one, or ``resolved`` for the recent ones)."""
    st = state_of(request)
    q = request.query_params
    page = parse_page(q)
    state = _text(q, "state")
    if state is not None and state not in ALERT_STATES:
        raise ApiError(400, "bad_parameter", f"state must be one of {', '.join(ALERT_STATES)}")
    clauses = ["state = $1"] if state else ["state <> 'resolved'"]
    params: list[object] = [state] if state else []
    for key in ("rule", "severity"):
        if (value := _text(q, key)) is not None:
            params.append(value)
            clauses.append(f"{key} = ${len(params)}")
    if (host := _text(q, "host")) is not None:
        params.append(host)
        clauses.append(f"labels ->> 'host' = ${len(params)}")
    if (acked := _text(q, "acked")) is not None:
        clauses.append("acked_at IS NOT NULL" if acked == "true" else "acked_at IS NULL")
    n = len(params)
    rows = await st.pool.fetch(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(clauses)}"  # noqa: S608 -- bind parameters
        f" ORDER BY started_at DESC, id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        page.limit + 1,
        page.offset,
    )
    items = [from_row(ActiveAlert, r) for r in rows[: page.limit]]
    return MsgspecResponse(AlertList(items, page.next_offset(len(rows))))


async def history(request: Request) -> Response:
    st = state_of(request)
    q = request.query_params
    page = parse_page(q)
    end = parse_time("end", q.get("end"), datetime.now(UTC) + timedelta(seconds=1))
    start = parse_time("start", q.get("start"), end - timedelta(days=7))
    clauses = ["ts >= $1", "ts < $2"]
    params: list[object] = [start, end]
    for key in ("rule", "state", "severity", "fingerprint"):
        if (value := _text(q, key)) is not None:
            params.append(value)
            clauses.append(f"{key} = ${len(params)}")
    if (host := _text(q, "host")) is not None:
        params.append(host)
        clauses.append(f"labels ->> 'host' = ${len(params)}")
    n = len(params)
    rows = await st.pool.fetch(
        "SELECT id, change_id, rule, fingerprint, state, repeat, severity, value,"  # noqa: S608 -- bind parameters
        " labels::text AS labels, message, suppressed, ts FROM alert_history"
        f" WHERE {' AND '.join(clauses)} ORDER BY ts DESC, id DESC"
        f" LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        page.limit + 1,
        page.offset,
    )
    items = [from_row(HistoryItem, r) for r in rows[: page.limit]]
    return MsgspecResponse(HistoryList(items, page.next_offset(len(rows))))


async def ack(request: Request) -> Response:
    """Acknowledge: no reminders while it stays firing; its resolution is still sent."""
    st = state_of(request)
    grant = await st.auth.check(request, "write")
    row = await st.pool.fetchrow(
        f"UPDATE alerts SET acked_at = coalesce(acked_at, now()),"  # noqa: S608 -- constant columns
        f" acked_by = coalesce(acked_by, $2), updated_at = now()"
        f" WHERE id = $1 AND state <> 'resolved' RETURNING {_ALERT_COLUMNS}",
        request.path_params["id"],
        grant.name if grant is not None else "",
    )
    if row is None:
        raise ApiError(404, "not_found", "no pending or firing alert with that id")
    return MsgspecResponse(from_row(ActiveAlert, row))


async def _changes(queue: asyncio.Queue[bytes], heartbeat: float) -> AsyncGenerator[bytes, None]:
    yield b"retry: 2000\n\n"
    while True:
        try:
            data = await asyncio.wait_for(queue.get(), heartbeat)
        except TimeoutError:
            yield b": heartbeat\n\n"
            continue
        yield b"event: alert\ndata: %s\n\n" % data


class ChangeStream(StreamingResponse):
    """Unsubscribes however the response ends (a client gone mid-send included)."""

    def __init__(self, queue: asyncio.Queue[bytes], heartbeat: float, sub: Subscription) -> None:
        self._changes = _changes(queue, heartbeat)
        self._sub = sub
        super().__init__(
            self._changes,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._changes.aclose()
            with contextlib.suppress(NatsError):
                await self._sub.unsubscribe()


async def stream(request: Request) -> Response:
    """Alert state changes as Server-Sent Events (event ``alert``, data an AlertChange)."""
    st = state_of(request)
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=STREAM_QUEUE)

    async def deliver(msg: Msg) -> None:
        # A slow client loses its oldest changes, never blocks the connection.
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(msg.data)

    sub = await st.nats.subscribe(f"{st.settings.subjects.root}.alerts.>", cb=deliver)
    return ChangeStream(queue, st.settings.api_stream_heartbeat_s, sub)


_FILTERS = (
    Param("host", "query", {"type": "string"}),
    Param("rule", "query", {"type": "string"}),
    Param("severity", "query", {"type": "string", "enum": ["info", "warning", "critical"]}),
)

OPERATIONS = [
    Operation(
        "GET",
        "/alerts",
        active,
        "Pending and firing alerts, newest first",
        TAG,
        "read",
        params=(
            Param("state", "query", {"type": "string", "enum": list(ALERT_STATES)}),
            Param("acked", "query", {"type": "boolean"}),
            *_FILTERS,
            *PAGE,
        ),
        response=AlertList,
    ),
    Operation(
        "GET",
        "/alerts/history",
        history,
        "Alert state changes, newest first",
        TAG,
        "read",
        params=(
            Param("start", "query", TIME_SCHEMA, f"{TIME_FORMATS}; default end - 7 days"),
            Param("end", "query", TIME_SCHEMA, f"{TIME_FORMATS}; default now"),
            Param("state", "query", {"type": "string", "enum": list(ALERT_STATES)}),
            Param("fingerprint", "query", {"type": "string"}),
            *_FILTERS,
            *PAGE,
        ),
        response=HistoryList,
    ),
    Operation(
        "GET",
        "/alerts/stream",
        stream,
        "Alert state changes as Server-Sent Events (event 'alert')",
        TAG,
        "read",
        media_type="text/event-stream",
    ),
    Operation(
        "POST",
        "/alerts/{id:int}/ack",
        ack,
        "Acknowledge an alert (no reminders while it fires)",
        TAG,
        "write",
        params=(ID,),
        response=ActiveAlert,
    ),
    Operation("GET", "/alerts/rules", list_rules, "Alert rules", TAG, "read", response=RuleList),
    Operation(
        "POST",
        "/alerts/rules",
        create_rule,
        "Create a rule (400 names the position of a bad expression)",
        TAG,
        "write",
        body=Rule,
        response=RuleInfo,
        status=201,
    ),
    Operation(
        "GET",
        "/alerts/rules/{name}",
        get_rule,
        "One rule",
        TAG,
        "read",
        params=(NAME,),
        response=RuleInfo,
    ),
    Operation(
        "PUT",
        "/alerts/rules/{name}",
        put_rule,
        "Create or replace a rule (switch a default rule off with enabled=false)",
        TAG,
        "write",
        params=(NAME,),
        body=Rule,
        response=RuleInfo,
        also=((201, "created"),),
    ),
    Operation(
        "POST",
        "/alerts/rules/{name}/enable",
        enable_rule,
        "Switch a rule on",
        TAG,
        "write",
        params=(NAME,),
        response=RuleInfo,
    ),
    Operation(
        "POST",
        "/alerts/rules/{name}/disable",
        disable_rule,
        "Switch a rule off (its pending and firing alerts resolve)",
        TAG,
        "write",
        params=(NAME,),
        response=RuleInfo,
    ),
    Operation(
        "DELETE",
        "/alerts/rules/{name}",
        delete_rule,
        "Delete a rule (default rules are switched off instead)",
        TAG,
        "write",
        params=(NAME,),
        status=204,
    ),
]
