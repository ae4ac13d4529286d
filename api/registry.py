"""The plugin registry: list, register, get, patch, enable/disable, delete, health and runs.

A change to what a collector must apply (enabled, interval, config) bumps ``config_revision``
and is published to the KV bucket inside the same transaction: if NATS does not take it, the
database change is rolled back and the caller gets 503, so the two never disagree for long.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from unity.api.builtins import builtin_ids
from unity.api.config_schema import check_config, check_schema
from unity.api.errors import ApiError
from unity.api.latest import PAGE
from unity.api.operation import INT64_MAX, Operation, Param, read_body
from unity.api.params import TIME_FORMATS, TIME_SCHEMA, parse_bool, parse_page, parse_time
from unity.api.responses import MsgspecResponse
from unity.api.rows import from_row
from unity.api.state import AppState, state_of
from unity.schemas import PluginSettings, settings_key, token
from unity.schemas.api import (
    ConfigUpdate,
    PluginConfig,
    PluginHealth,
    PluginInfo,
    PluginList,
    PluginPatch,
    PluginRegistration,
    PluginRun,
    RunList,
)

COLUMNS = """id, host, plugin, instance, name, version, description, author, category, tags,
    source, external, enabled, interval_s, config_revision, metrics::text AS metrics, health,
    health_message, health_at, last_seen, created_at, updated_at"""
MAX_INTERVAL_S = 86400.0
ID = Param(
    "id",
    "path",
    {"type": "string"},
    "the plugin's id (`cpu`), or its numeric registry key",
    required=True,
)
# Where one plugin runs on several hosts, or as several instances, these pick one.
WHERE = (
    Param("host", "query", {"type": "string"}, "the host, where the plugin runs on several"),
    Param("instance", "query", {"type": "string"}, "the instance, where several run"),
)


def plugin_info(row: asyncpg.Record) -> PluginInfo:
    info = from_row(PluginInfo, row, ("metrics",))
    if info.plugin in builtin_ids():
        # Seen first through its data ('discovered') or announced over HTTP, it is still ours.
        info = msgspec.structs.replace(info, source="builtin", external=False)
    return info


async def resolve(request: Request, db: asyncpg.Connection | asyncpg.Pool) -> int:
    """The registry key of the entry the path names: by the plugin's id (narrowed by ``host``
    and ``instance`` where it runs on several) or by the numeric key itself."""
    ref: str = request.path_params["id"]
    if ref.isascii() and ref.isdigit():
        number = int(ref)
        if number > INT64_MAX:  # a bigint key: larger names nothing
            raise ApiError(404, "not_found", f"no plugin {ref} in the registry")
        return number
    q = request.query_params
    rows = await db.fetch(
        "SELECT id, host, instance FROM plugins WHERE plugin = $1"
        " AND ($2::text IS NULL OR host = $2) AND ($3::text IS NULL OR instance = $3)"
        " ORDER BY host, instance LIMIT 20",
        ref,
        q.get("host"),
        q.get("instance"),
    )
    where = "".join(f", {k} {q[k]!r}" for k in ("host", "instance") if q.get(k) is not None)
    if not rows:
        raise ApiError(404, "not_found", f"no plugin {ref!r}{where} in the registry")
    if len(rows) > 1:
        runs = ", ".join(f"{r['host']}/{r['instance'] or '-'}" for r in rows)
        raise ApiError(
            409,
            "ambiguous_plugin",
            f"plugin {ref!r}{where} runs as several entries ({runs}): add ?host= or ?instance=",
        )
    key: int = rows[0]["id"]
    return key


def _check_interval(value: float | None) -> None:
    if value is not None and not 0.05 <= value <= MAX_INTERVAL_S:
        raise ApiError(422, "bad_interval", f"interval_s must be between 0.05 and {MAX_INTERVAL_S}")


async def _publish(st: AppState, row: asyncpg.Record) -> None:
    settings = PluginSettings(
        enabled=row["enabled"],
        interval_s=row["interval_s"],
        config=msgspec.json.decode(row["config"]),
        revision=row["config_revision"],
    )
    await st.config.put(settings_key(row["host"], row["plugin"], row["instance"]), settings)


async def _fetch(db: asyncpg.Connection | asyncpg.Pool, plugin_id: int) -> asyncpg.Record:
    row = await db.fetchrow(
        f"SELECT {COLUMNS}, config::text AS config, config_schema::text AS config_schema"  # noqa: S608 -- fixed columns
        " FROM plugins WHERE id = $1",
        plugin_id,
    )
    if row is None:
        raise ApiError(404, "not_found", f"no plugin with registry key {plugin_id}")
    return row


_FILTERS = {
    "host": "host = ${}",
    "plugin": "plugin = ${}",
    "category": "category = ${}",
    "health": "health = ${}",
}


async def list_plugins(request: Request) -> Response:
    st = state_of(request)
    q = request.query_params
    page = parse_page(q)
    clauses: list[str] = []
    params: list[object] = []
    for key, clause in _FILTERS.items():
        if value := q.get(key):
            params.append(value)
            clauses.append(clause.format(len(params)))
    # Source and external as entries read (plugin_info): a built-in is one however it came in.
    if q.get("source"):
        params += [q.get("source"), sorted(builtin_ids())]
        n = len(params)
        clauses.append(f"(CASE WHEN plugin = ANY(${n}) THEN 'builtin' ELSE source END) = ${n - 1}")
    if q.get("enabled"):
        params.append(parse_bool("enabled", q.get("enabled"), True))
        clauses.append(f"enabled = ${len(params)}")
    if q.get("external"):
        params += [parse_bool("external", q.get("external"), True), sorted(builtin_ids())]
        n = len(params)
        clauses.append(f"(external AND NOT plugin = ANY(${n})) = ${n - 1}")
    where = " AND ".join(clauses) or "TRUE"
    n = len(params)
    rows = await st.pool.fetch(
        f"SELECT {COLUMNS} FROM plugins WHERE {where}"  # noqa: S608 -- fixed clauses, bind parameters
        f" ORDER BY host, plugin, instance LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        page.limit + 1,
        page.offset,
    )
    items = [plugin_info(r) for r in rows[: page.limit]]
    return MsgspecResponse(PluginList(items, page.next_offset(len(rows))))


def _registered_config(body: PluginRegistration, stored: str | None) -> dict[str, Any] | None:
    """The config a registration leaves in place, checked against its schema; None keeps the
    stored one. A new entry gets ``body.config`` (``{}`` when absent), which must fit; an
    existing one keeps its config while that fits the new schema, and otherwise takes the
    registration's (a plugin upgrade that adds a required key sends its defaults)."""
    check_schema(body.config_schema)
    if stored is None:
        check_config(body.config or {}, body.config_schema)
        return body.config or {}
    try:
        check_config(msgspec.json.decode(stored), body.config_schema, "the stored config")
    except ApiError:
        if body.config is None:
            raise
        check_config(body.config, body.config_schema)
        return body.config
    return None


async def register(request: Request) -> Response:
    st = state_of(request)
    body = await read_body(request, PluginRegistration)
    if not body.host.strip() or not body.plugin.strip():
        raise ApiError(422, "invalid_body", "host and plugin must not be empty")
    _check_interval(body.interval_s)
    host, plugin = token(body.host), token(body.plugin)
    async with st.pool.acquire() as conn, conn.transaction():
        stored = await conn.fetchval(
            "SELECT config::text FROM plugins WHERE host = $1 AND plugin = $2 AND instance = $3"
            " FOR UPDATE",
            host,
            plugin,
            body.instance,
        )
        config = _registered_config(body, stored)
        row = await conn.fetchrow(
            f"""
            INSERT INTO plugins AS p (host, plugin, instance, name, version, description, author,
                category, tags, metrics, config_schema, config, interval_s, enabled, source,
                external, config_revision)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb,
                coalesce($12::jsonb, '{{}}'), $13, $14,
                CASE WHEN $15 THEN 'builtin' ELSE 'registered' END, NOT $15, 1)
            ON CONFLICT ON CONSTRAINT plugins_identity DO UPDATE SET
                name = EXCLUDED.name, version = EXCLUDED.version,
                description = EXCLUDED.description, author = EXCLUDED.author,
                category = EXCLUDED.category, tags = EXCLUDED.tags, metrics = EXCLUDED.metrics,
                config_schema = EXCLUDED.config_schema,
                config = coalesce($12::jsonb, p.config),
                config_revision = p.config_revision + ($12::jsonb IS NOT NULL)::int,
                source = CASE WHEN p.source = 'builtin' OR $15 THEN 'builtin'
                    ELSE 'registered' END,
                external = NOT (p.source = 'builtin' OR $15), updated_at = now()
            RETURNING {COLUMNS}, config::text AS config, (xmax = 0) AS inserted
            """,  # noqa: S608 -- fixed columns
            host,
            plugin,
            body.instance,
            body.name,
            body.version,
            body.description,
            body.author,
            body.category,
            body.tags,
            msgspec.json.encode(body.metrics).decode(),
            msgspec.json.encode(body.config_schema).decode(),
            None if config is None else msgspec.json.encode(config).decode(),
            body.interval_s,
            body.enabled,
            plugin in builtin_ids(),
        )
        if config is not None:  # a new entry, or a config replaced because it no longer fit
            await _publish(st, row)
    return MsgspecResponse(plugin_info(row), status_code=201 if row["inserted"] else 200)


async def get_plugin(request: Request) -> Response:
    st = state_of(request)
    return MsgspecResponse(plugin_info(await _fetch(st.pool, await resolve(request, st.pool))))


async def patch_plugin(request: Request) -> Response:
    body = await read_body(request, PluginPatch)
    return await _apply(request, msgspec.structs.asdict(body))


async def enable(request: Request) -> Response:
    return await _apply(request, {"enabled": True})


async def disable(request: Request) -> Response:
    return await _apply(request, {"enabled": False})


_LIVE = ("enabled", "interval_s")


async def _apply(request: Request, changes: dict[str, Any]) -> Response:
    st = state_of(request)
    plugin_id = await resolve(request, st.pool)
    changes = {k: v for k, v in changes.items() if v is not msgspec.UNSET}
    if "interval_s" in changes:
        _check_interval(changes["interval_s"])
    if "config_schema" in changes:
        check_schema(changes["config_schema"])
    async with st.pool.acquire() as conn, conn.transaction():
        current = await conn.fetchrow(
            "SELECT enabled, interval_s, config::text AS config FROM plugins WHERE id = $1"
            " FOR UPDATE",
            plugin_id,
        )
        if current is None:
            raise ApiError(404, "not_found", f"no plugin with id {plugin_id}")
        if "config_schema" in changes:
            stored = msgspec.json.decode(current["config"])
            check_config(stored, changes["config_schema"], "the stored config")
        live = any(k in changes and changes[k] != current[k] for k in _LIVE)
        sets = ["updated_at = now()"]
        params: list[object] = [plugin_id]
        for key, value in changes.items():
            params.append(msgspec.json.encode(value).decode() if key == "config_schema" else value)
            cast = "::jsonb" if key == "config_schema" else ""
            sets.append(f"{key} = ${len(params)}{cast}")
        if live:
            sets.append("config_revision = config_revision + 1")
        row = await conn.fetchrow(
            f"UPDATE plugins SET {', '.join(sets)} WHERE id = $1"  # noqa: S608 -- keys are Struct fields
            f" RETURNING {COLUMNS}, config::text AS config",
            *params,
        )
        if live:
            await _publish(st, row)
    return MsgspecResponse(plugin_info(row))


async def delete_plugin(request: Request) -> Response:
    st = state_of(request)
    plugin_id = await resolve(request, st.pool)
    async with st.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "DELETE FROM plugins WHERE id = $1 RETURNING host, plugin, instance", plugin_id
        )
        if row is None:
            raise ApiError(404, "not_found", f"no plugin with id {plugin_id}")
        await st.config.delete(settings_key(row["host"], row["plugin"], row["instance"]))
    return Response(status_code=204)


async def _schema(db: asyncpg.Connection | asyncpg.Pool, plugin: str, stored: str) -> Any:
    """An entry's config schema: its own, else its plugin's from the catalogue (a built-in's
    real schema, filled by `unity migrate`), else ``{}``."""
    schema = msgspec.json.decode(stored)
    if schema:
        return schema
    known = await db.fetchval(
        "SELECT config_schema::text FROM plugin_catalogue WHERE plugin = $1", plugin
    )
    return msgspec.json.decode(known) if known else {}


async def _plugin_config(
    db: asyncpg.Connection | asyncpg.Pool, row: asyncpg.Record
) -> PluginConfig:
    return PluginConfig(
        config=msgspec.json.decode(row["config"]),
        config_schema=await _schema(db, row["plugin"], row["config_schema"]),
        revision=row["config_revision"],
        enabled=row["enabled"],
        interval_s=row["interval_s"],
    )


async def get_config(request: Request) -> Response:
    st = state_of(request)
    row = await _fetch(st.pool, await resolve(request, st.pool))
    return MsgspecResponse(await _plugin_config(st.pool, row))


async def put_config(request: Request) -> Response:
    st = state_of(request)
    plugin_id = await resolve(request, st.pool)
    body = await read_body(request, ConfigUpdate)
    async with st.pool.acquire() as conn, conn.transaction():
        current = await conn.fetchrow(
            "SELECT plugin, config_schema::text AS config_schema, config_revision FROM plugins"
            " WHERE id = $1 FOR UPDATE",
            plugin_id,
        )
        if current is None:
            raise ApiError(404, "not_found", f"no plugin with id {plugin_id}")
        if body.revision is not None and body.revision != current["config_revision"]:
            raise ApiError(
                409,
                "revision_conflict",
                f"config is at revision {current['config_revision']}, not {body.revision}",
            )
        check_config(body.config, await _schema(conn, current["plugin"], current["config_schema"]))
        row = await conn.fetchrow(
            f"UPDATE plugins SET config = $2::jsonb, config_revision = config_revision + 1,"  # noqa: S608 -- values are bind parameters
            f" updated_at = now() WHERE id = $1"
            f" RETURNING {COLUMNS}, config::text AS config, config_schema::text AS config_schema",
            plugin_id,
            msgspec.json.encode(body.config).decode(),
        )
        await _publish(st, row)
        return MsgspecResponse(await _plugin_config(conn, row))


async def runs(request: Request) -> Response:
    st = state_of(request)
    q = request.query_params
    page = parse_page(q)
    row = await _fetch(st.pool, await resolve(request, st.pool))
    end = parse_time("end", q.get("end"), datetime.now(UTC))
    start = parse_time("start", q.get("start"), end - timedelta(days=1))
    rows = await st.pool.fetch(
        "SELECT time, status, message, duration_ms, samples FROM plugin_runs"
        " WHERE host = $1 AND plugin = $2 AND instance = $3 AND time >= $4 AND time < $5"
        " ORDER BY time DESC LIMIT $6 OFFSET $7",
        row["host"],
        row["plugin"],
        row["instance"],
        start,
        end,
        page.limit + 1,
        page.offset,
    )
    items = [from_row(PluginRun, r, ()) for r in rows[: page.limit]]
    return MsgspecResponse(RunList(items, page.next_offset(len(rows))))


HEALTH_WINDOW_S = 86400.0


async def health(request: Request) -> Response:
    st = state_of(request)
    row = await _fetch(st.pool, await resolve(request, st.pool))
    counts = await st.pool.fetch(
        "SELECT status, count(*) AS n FROM plugin_runs WHERE host = $1 AND plugin = $2"
        " AND instance = $3 AND time >= now() - make_interval(secs => $4) GROUP BY status",
        row["host"],
        row["plugin"],
        row["instance"],
        HEALTH_WINDOW_S,
    )
    by_status = {"ok": 0, "degraded": 0, "error": 0} | {r["status"]: r["n"] for r in counts}
    return MsgspecResponse(
        PluginHealth(
            row["health"],
            row["health_message"],
            row["health_at"],
            row["last_seen"],
            HEALTH_WINDOW_S,
            by_status,
        )
    )


_LIST_FILTERS = tuple(
    Param(k, "query", {"type": "string"})
    for k in ("host", "plugin", "category", "source", "health")
) + tuple(Param(k, "query", {"type": "boolean"}) for k in ("enabled", "external"))
_RANGE = (
    Param("start", "query", TIME_SCHEMA, f"{TIME_FORMATS}; default: end - 1 day"),
    Param("end", "query", TIME_SCHEMA, f"{TIME_FORMATS}; default: now"),
)

OPERATIONS = [
    Operation(
        "GET",
        "/plugins",
        list_plugins,
        "List registry entries",
        "plugins",
        "read",
        params=(*_LIST_FILTERS, *PAGE),
        response=PluginList,
    ),
    Operation(
        "POST",
        "/plugins",
        register,
        "Register (or re-register) an external plugin",
        "plugins",
        "write",
        body=PluginRegistration,
        response=PluginInfo,
        status=201,
        also=((200, "registered again: the entry was updated"),),
    ),
    Operation(
        "GET",
        "/plugins/{id}",
        get_plugin,
        "One registry entry",
        "plugins",
        "read",
        params=(ID, *WHERE),
        response=PluginInfo,
    ),
    Operation(
        "PATCH",
        "/plugins/{id}",
        patch_plugin,
        "Change metadata, enabled or interval",
        "plugins",
        "write",
        params=(ID, *WHERE),
        body=PluginPatch,
        response=PluginInfo,
    ),
    Operation(
        "DELETE",
        "/plugins/{id}",
        delete_plugin,
        "Remove an entry and its published config",
        "plugins",
        "admin",
        params=(ID, *WHERE),
        status=204,
    ),
    Operation(
        "POST",
        "/plugins/{id}/enable",
        enable,
        "Enable (applied live)",
        "plugins",
        "write",
        params=(ID, *WHERE),
        response=PluginInfo,
    ),
    Operation(
        "POST",
        "/plugins/{id}/disable",
        disable,
        "Disable (applied live)",
        "plugins",
        "write",
        params=(ID, *WHERE),
        response=PluginInfo,
    ),
    Operation(
        "GET",
        "/plugins/{id}/config",
        get_config,
        "Config, its JSON Schema and revision",
        "plugins",
        "read",
        params=(ID, *WHERE),
        response=PluginConfig,
    ),
    Operation(
        "PUT",
        "/plugins/{id}/config",
        put_config,
        "Replace the config (validated against the schema, applied live)",
        "plugins",
        "write",
        params=(ID, *WHERE),
        body=ConfigUpdate,
        response=PluginConfig,
    ),
    Operation(
        "GET",
        "/plugins/{id}/runs",
        runs,
        "Runs from health reports, newest first",
        "plugins",
        "read",
        params=(ID, *WHERE, *_RANGE, *PAGE),
        response=RunList,
    ),
    Operation(
        "GET",
        "/plugins/{id}/health",
        health,
        "Current health and run outcomes over a day",
        "plugins",
        "read",
        params=(ID, *WHERE),
        response=PluginHealth,
    ),
]
