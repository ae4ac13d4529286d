"""``/alerts``: silences, maintenance windows, notification channels (admin) and deliveries.

A channel's URL holds its secrets (tokens, passwords): it is stored as given and only ever
shown masked. A test message is queued as a delivery that the evaluator sends like any other;
its outcome appears under ``/alerts/deliveries``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from unity.api.alerts import TAG, matchers_of
from unity.api.errors import ApiError
from unity.api.latest import PAGE
from unity.api.operation import Operation, Param, read_body
from unity.api.params import parse_page
from unity.api.responses import MsgspecResponse
from unity.api.rows import from_row
from unity.api.state import state_of
from unity.schemas.alerts import (
    Channel,
    ChannelBody,
    ChannelList,
    Delivery,
    DeliveryList,
    Maintenance,
    MaintenanceBody,
    MaintenanceList,
    Silence,
    SilenceBody,
    SilenceList,
    TestQueued,
    in_window,
    redact_url,
)

ID = Param("id", "path", {"type": "integer", "minimum": 1})
CHANNEL = Param("name", "path", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"})
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _grant_name(grant: object) -> str:
    return str(getattr(grant, "name", ""))


async def list_silences(request: Request) -> Response:
    st = state_of(request)
    rows = await st.pool.fetch(
        "SELECT id, matchers, starts_at, ends_at, comment, created_by,"
        " (starts_at <= now() AND ends_at > now()) AS active FROM alert_silences"
        " WHERE ends_at > now() - interval '1 day' ORDER BY ends_at DESC, id DESC"
    )
    return MsgspecResponse(SilenceList([from_row(Silence, r, ()) for r in rows]))


async def create_silence(request: Request) -> Response:
    st = state_of(request)
    grant = await st.auth.check(request, "write")
    body = await read_body(request, SilenceBody)
    matchers_of(body.matchers)
    if not body.matchers.strip():
        raise ApiError(400, "bad_matchers", "a silence needs at least one matcher")
    starts = body.starts_at or datetime.now(UTC)
    if (body.ends_at is None) == (body.duration_s is None):
        raise ApiError(400, "bad_silence", "give either ends_at or duration_s")
    ends = body.ends_at or starts + timedelta(seconds=body.duration_s or 0)
    if ends <= starts:
        raise ApiError(400, "bad_silence", "ends_at must be after starts_at")
    row = await st.pool.fetchrow(
        "INSERT INTO alert_silences (matchers, starts_at, ends_at, comment, created_by)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id, matchers, starts_at, ends_at, comment,"
        " created_by, (starts_at <= now() AND ends_at > now()) AS active",
        body.matchers,
        starts,
        ends,
        body.comment,
        _grant_name(grant),
    )
    return MsgspecResponse(from_row(Silence, row, ()), status_code=201)


async def delete_silence(request: Request) -> Response:
    st = state_of(request)
    # Expire rather than delete, so the history of who silenced what stays readable.
    done = await st.pool.fetchval(
        "UPDATE alert_silences SET ends_at = greatest(starts_at + interval '1 microsecond',"
        " least(ends_at, now())) WHERE id = $1 RETURNING 1",
        request.path_params["id"],
    )
    if done is None:
        raise ApiError(404, "not_found", "no silence with that id")
    return Response(status_code=204)


def _maintenance(row: asyncpg.Record, now: datetime) -> Maintenance:
    active = in_window(now, row["starts_at"], row["duration_s"], row["recurrence"])
    return from_row(Maintenance, row, (), active=active)


async def list_maintenance(request: Request) -> Response:
    st = state_of(request)
    rows = await st.pool.fetch(
        "SELECT id, name, matchers, starts_at, duration_s, recurrence, comment"
        " FROM alert_maintenance ORDER BY starts_at DESC, id DESC"
    )
    now = datetime.now(UTC)
    return MsgspecResponse(MaintenanceList([_maintenance(r, now) for r in rows]))


async def create_maintenance(request: Request) -> Response:
    st = state_of(request)
    body = await read_body(request, MaintenanceBody)
    if not matchers_of(body.matchers).strip():
        raise ApiError(400, "bad_matchers", "a maintenance window needs at least one matcher")
    row = await st.pool.fetchrow(
        "INSERT INTO alert_maintenance (name, matchers, starts_at, duration_s, recurrence,"
        " comment) VALUES ($1, $2, $3, $4, $5, $6)"
        " RETURNING id, name, matchers, starts_at, duration_s, recurrence, comment",
        body.name,
        body.matchers,
        body.starts_at,
        body.duration_s,
        body.recurrence,
        body.comment,
    )
    return MsgspecResponse(_maintenance(row, datetime.now(UTC)), status_code=201)


async def delete_maintenance(request: Request) -> Response:
    st = state_of(request)
    done = await st.pool.fetchval(
        "DELETE FROM alert_maintenance WHERE id = $1 RETURNING 1", request.path_params["id"]
    )
    if done is None:
        raise ApiError(404, "not_found", "no maintenance window with that id")
    return Response(status_code=204)


_CHANNEL_COLUMNS = "name, url, min_severity, matchers, enabled, updated_at"


def _channel(row: asyncpg.Record) -> Channel:
    return from_row(Channel, row, (), url=redact_url(row["url"]))


def _channel_name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not 1 <= len(name) <= 64 or not set(name) <= _NAME_OK:
        raise ApiError(400, "bad_name", "a channel name is 1-64 of [A-Za-z0-9_-]")
    return name


async def list_channels(request: Request) -> Response:
    st = state_of(request)
    rows = await st.pool.fetch(f"SELECT {_CHANNEL_COLUMNS} FROM alert_channels ORDER BY name")  # noqa: S608
    return MsgspecResponse(ChannelList([_channel(r) for r in rows]))


async def get_channel(request: Request) -> Response:
    st = state_of(request)
    name = _channel_name(request)
    row = await st.pool.fetchrow(
        f"SELECT {_CHANNEL_COLUMNS} FROM alert_channels WHERE name = $1",  # noqa: S608
        name,
    )
    if row is None:
        raise ApiError(404, "not_found", f"no channel {name!r}")
    return MsgspecResponse(_channel(row))


async def put_channel(request: Request) -> Response:
    st = state_of(request)
    name = _channel_name(request)
    body = await read_body(request, ChannelBody)
    matchers_of(body.matchers)
    if "://" not in body.url:
        raise ApiError(400, "bad_url", "a channel URL looks like ntfy://host/topic or json://...")
    row = await st.pool.fetchrow(
        "INSERT INTO alert_channels (name, url, min_severity, matchers, enabled)"  # noqa: S608
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url,"
        " min_severity = EXCLUDED.min_severity, matchers = EXCLUDED.matchers,"
        " enabled = EXCLUDED.enabled, updated_at = now()"
        f" RETURNING (xmax = 0) AS created, {_CHANNEL_COLUMNS}",
        name,
        body.url,
        body.min_severity,
        body.matchers,
        body.enabled,
    )
    return MsgspecResponse(_channel(row), status_code=201 if row["created"] else 200)


async def delete_channel(request: Request) -> Response:
    st = state_of(request)
    name = _channel_name(request)
    done = await st.pool.fetchval("DELETE FROM alert_channels WHERE name = $1 RETURNING 1", name)
    if done is None:
        raise ApiError(404, "not_found", f"no channel {name!r}")
    return Response(status_code=204)


async def test_channel(request: Request) -> Response:
    st = state_of(request)
    name = _channel_name(request)
    change_id = f"test:{name}:{uuid.uuid4().hex[:12]}"
    async with st.pool.acquire() as conn, conn.transaction():
        channel = await conn.fetchval("SELECT id FROM alert_channels WHERE name = $1", name)
        if channel is None:
            raise ApiError(404, "not_found", f"no channel {name!r}")
        await conn.execute(
            "INSERT INTO alert_history (change_id, rule, fingerprint, episode, state, severity,"
            " message, ts) VALUES ($1, 'test', 'test', 0, 'firing', 'info', $2, now())",
            change_id,
            f"Test message from Unity to channel {name}",
        )
        await conn.execute(
            "INSERT INTO alert_deliveries (change_id, channel_id, group_key) VALUES ($1, $2, $1)",
            change_id,
            channel,
        )
    return MsgspecResponse(TestQueued(change_id), status_code=202)


async def deliveries(request: Request) -> Response:
    st = state_of(request)
    q = request.query_params
    page = parse_page(q)
    clauses = ["TRUE"]
    params: list[object] = []
    for key, column in (("status", "d.status"), ("channel", "c.name"), ("rule", "h.rule")):
        value = q.get(key)
        if value:
            if "\x00" in value:
                raise ApiError(400, "bad_parameter", f"{key} contains a NUL character")
            params.append(value)
            clauses.append(f"{column} = ${len(params)}")
    if change := q.get("change_id"):
        params.append(change)
        clauses.append(f"d.change_id = ${len(params)}")
    n = len(params)
    rows = await st.pool.fetch(
        "SELECT d.id, d.change_id, c.name AS channel, h.rule, h.state, d.status, d.attempts,"  # noqa: S608 -- bind parameters
        " d.error, d.created_at, d.sent_at FROM alert_deliveries d"
        " JOIN alert_channels c ON c.id = d.channel_id"
        " JOIN alert_history h ON h.change_id = d.change_id"
        f" WHERE {' AND '.join(clauses)} ORDER BY d.created_at DESC, d.id DESC"
        f" LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        page.limit + 1,
        page.offset,
    )
    items = [from_row(Delivery, r, ()) for r in rows[: page.limit]]
    return MsgspecResponse(DeliveryList(items, page.next_offset(len(rows))))


OPERATIONS = [
    Operation(
        "GET",
        "/alerts/silences",
        list_silences,
        "Silences (active, future, and those ended within a day)",
        TAG,
        "read",
        response=SilenceList,
    ),
    Operation(
        "POST",
        "/alerts/silences",
        create_silence,
        "Silence matching alerts until a time",
        TAG,
        "write",
        body=SilenceBody,
        response=Silence,
        status=201,
    ),
    Operation(
        "DELETE",
        "/alerts/silences/{id:int}",
        delete_silence,
        "End a silence now",
        TAG,
        "write",
        params=(ID,),
        status=204,
    ),
    Operation(
        "GET",
        "/alerts/maintenance",
        list_maintenance,
        "Maintenance windows",
        TAG,
        "read",
        response=MaintenanceList,
    ),
    Operation(
        "POST",
        "/alerts/maintenance",
        create_maintenance,
        "Add a maintenance window (one-off, daily or weekly)",
        TAG,
        "write",
        body=MaintenanceBody,
        response=Maintenance,
        status=201,
    ),
    Operation(
        "DELETE",
        "/alerts/maintenance/{id:int}",
        delete_maintenance,
        "Remove a maintenance window",
        TAG,
        "write",
        params=(ID,),
        status=204,
    ),
    Operation(
        "GET",
        "/alerts/channels",
        list_channels,
        "Notification channels (URLs masked)",
        TAG,
        "admin",
        response=ChannelList,
    ),
    Operation(
        "GET",
        "/alerts/channels/{name}",
        get_channel,
        "One channel (URL masked)",
        TAG,
        "admin",
        params=(CHANNEL,),
        response=Channel,
    ),
    Operation(
        "PUT",
        "/alerts/channels/{name}",
        put_channel,
        "Create or replace a channel (an Apprise URL)",
        TAG,
        "admin",
        params=(CHANNEL,),
        body=ChannelBody,
        response=Channel,
        also=((201, "created"),),
    ),
    Operation(
        "DELETE",
        "/alerts/channels/{name}",
        delete_channel,
        "Remove a channel",
        TAG,
        "admin",
        params=(CHANNEL,),
        status=204,
    ),
    Operation(
        "POST",
        "/alerts/channels/{name}/test",
        test_channel,
        "Queue a test message (its delivery shows under /alerts/deliveries)",
        TAG,
        "admin",
        params=(CHANNEL,),
        response=TestQueued,
        status=202,
    ),
    Operation(
        "GET",
        "/alerts/deliveries",
        deliveries,
        "Notification deliveries and their outcome, newest first",
        TAG,
        "read",
        params=(
            Param("status", "query", {"type": "string", "enum": ["pending", "sent", "failed"]}),
            Param("channel", "query", {"type": "string"}),
            Param("rule", "query", {"type": "string"}),
            Param("change_id", "query", {"type": "string"}),
            *PAGE,
        ),
        response=DeliveryList,
    ),
]
