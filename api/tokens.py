"""API tokens: 256-bit random secrets, stored as SHA-256 digests, shown once at creation."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

import asyncpg

from unity.api.rows import from_row
from unity.schemas.api import Scope, TokenInfo
from unity.sdk.connection import pg_connect
from unity.sdk.settings import Endpoints

SECRET_PREFIX = "uty_"  # noqa: S105 -- a marker, not a secret
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
# admin can do everything write can, write everything read can.
_RANK: dict[str, int] = {scope: rank for rank, scope in enumerate(SCOPES)}


class TokenError(ValueError):
    """A token cannot be created or changed as asked."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def grants(scopes: list[str], needed: Scope) -> bool:
    return any(s in _RANK and _RANK[s] >= _RANK[needed] for s in scopes)


_COLUMNS = "id, name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at"


def token_info(row: asyncpg.Record) -> TokenInfo:
    return from_row(TokenInfo, row, ())


async def create_token(
    db: asyncpg.Connection | asyncpg.Pool,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
) -> tuple[TokenInfo, str]:
    """Create a token; returns its record and the secret, which is not stored anywhere."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise TokenError(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    if not scopes:
        raise TokenError("a token needs at least one scope")
    if not name.strip():
        raise TokenError("a token needs a name")
    secret = new_secret()
    try:
        row = await db.fetchrow(
            f"INSERT INTO api_tokens (name, prefix, token_hash, scopes, expires_at)"  # noqa: S608 -- values are bind parameters
            f" VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
            name,
            secret[: len(SECRET_PREFIX) + 6],
            digest(secret),
            sorted(set(scopes), key=SCOPES.index),
            expires_at,
        )
    except asyncpg.UniqueViolationError:
        raise TokenError(
            f"an active token named {name!r} already exists; revoke it first or pick another name"
        ) from None
    return token_info(row), secret


async def list_tokens(db: asyncpg.Connection | asyncpg.Pool) -> list[TokenInfo]:
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY id")  # noqa: S608
    return [token_info(r) for r in rows]


async def revoke_token(db: asyncpg.Connection | asyncpg.Pool, name: str) -> TokenInfo:
    """Revoke the active token of that name (API processes drop it at once: migration 0005).

    The name is free for a new token afterwards; revoking it again is a no-op.
    """
    row = await db.fetchrow(
        f"UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL"  # noqa: S608 -- values are bind parameters
        f" RETURNING {_COLUMNS}",
        name,
    )
    if row is None:
        row = await db.fetchrow(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE name = $1 ORDER BY id DESC LIMIT 1",  # noqa: S608
            name,
        )
    if row is None:
        raise TokenError(f"no token named {name!r}")
    return token_info(row)


async def ensure_admin_token(ep: Endpoints) -> str | None:
    """Create an admin token when no usable one exists; returns its secret, else None.

    `unity up` calls this after migrating and prints the secret once.
    """
    conn = await pg_connect(ep)
    try:
        async with conn.transaction():
            # Two `up`s on one database must not both create one.
            await conn.execute("LOCK TABLE api_tokens IN SHARE ROW EXCLUSIVE MODE")
            usable: Any = await conn.fetchval(
                "SELECT count(*) FROM api_tokens WHERE 'admin' = ANY(scopes)"
                " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
            )
            if usable:
                return None
            taken = {
                r["name"]
                for r in await conn.fetch("SELECT name FROM api_tokens WHERE revoked_at IS NULL")
            }
            name = next(n for i in range(len(taken) + 1) if (n := _admin_name(i)) not in taken)
            _, secret = await create_token(conn, name, ["admin"])
            return secret
    finally:
        await conn.close()


def _admin_name(i: int) -> str:
    return "admin" if i == 0 else f"admin-{i + 1}"
