"""Web sessions: a token exchanged once for an HttpOnly cookie that stands for it.

The page never keeps the token: ``POST /session`` checks it and sets a cookie holding a random
secret (stored only as its SHA-256), bound to the token's row, so the token's scopes,
revocation and expiry apply to the session as they are. A write through the cookie must carry
the session's CSRF token in the ``X-CSRF-Token`` header: another site's form or script cannot
read it (the cookie is also SameSite=Strict). Sign-out deletes the row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from unity.api.errors import ApiError
from unity.api.operation import Operation, read_body
from unity.api.responses import MsgspecResponse
from unity.api.state import state_of
from unity.api.tokens import digest
from unity.schemas.api import Scope

COOKIE = "unity_session"
CSRF_HEADER = "X-CSRF-Token"
LIFETIME = timedelta(hours=12)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class SignIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /session``: the API token to exchange for a session cookie."""

    token: str


class SessionInfo(msgspec.Struct, frozen=True):
    """The signed-in session: whose token, what it may do, until when, and the CSRF token
    that cookie-authenticated writes send in ``X-CSRF-Token``."""

    name: str
    scopes: list[Scope]
    expires_at: datetime
    csrf: str


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


_CURRENT = """
    SELECT t.name, t.scopes, t.token_hash, s.csrf, s.expires_at
    FROM web_sessions s JOIN api_tokens t ON t.id = s.token_id
    WHERE s.id_hash = $1 AND s.expires_at > now() AND t.revoked_at IS NULL
      AND (t.expires_at IS NULL OR t.expires_at > now())
"""


async def _current(pool: asyncpg.Pool, request: Request) -> asyncpg.Record:
    secret = request.cookies.get(COOKIE, "")
    row = await pool.fetchrow(_CURRENT, _hash(secret)) if secret else None
    if row is None:
        raise _unauthorized("the session ended or expired; sign in again")
    if request.method not in _SAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), row["csrf"].encode()):
            raise ApiError(
                403, "csrf_failed", f"a write through the session needs its {CSRF_HEADER} header"
            )
    return row


async def session_token(pool: asyncpg.Pool, request: Request) -> bytes:
    """The token hash the request's session stands for; 401 when the session is not valid,
    403 when a write lacks the session's CSRF token."""
    row = await _current(pool, request)
    token_hash: bytes = row["token_hash"]
    return token_hash


def _info(row: asyncpg.Record) -> SessionInfo:
    return SessionInfo(row["name"], list(row["scopes"]), row["expires_at"], row["csrf"])


async def sign_in(request: Request) -> Response:
    st = state_of(request)
    body = await read_body(request, SignIn)
    secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    until = datetime.now(UTC) + LIFETIME
    async with st.pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM web_sessions WHERE expires_at <= now()")
        token = await conn.fetchrow(
            "SELECT id, expires_at FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > now())",
            digest(body.token.strip()),
        )
        if token is None:
            raise _unauthorized("unknown, revoked or expired token")
        if token["expires_at"] is not None:
            until = min(until, token["expires_at"])
        await conn.execute(
            "INSERT INTO web_sessions (id_hash, token_id, csrf, expires_at)"
            " VALUES ($1, $2, $3, $4)",
            _hash(secret),
            token["id"],
            csrf,
            until,
        )
        row = await conn.fetchrow(_CURRENT, _hash(secret))
    response = MsgspecResponse(_info(row))
    response.set_cookie(
        COOKIE,
        secret,
        max_age=int((until - datetime.now(UTC)).total_seconds()),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def current(request: Request) -> Response:
    return MsgspecResponse(_info(await _current(state_of(request).pool, request)))


async def sign_out(request: Request) -> Response:
    st = state_of(request)
    secret = request.cookies.get(COOKIE)
    if secret:
        try:
            await _current(st.pool, request)  # the CSRF check: another site cannot sign one out
        except ApiError as exc:
            if exc.status != 401:  # an ended session needs only its cookie cleared
                raise
        else:
            await st.pool.execute("DELETE FROM web_sessions WHERE id_hash = $1", _hash(secret))
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )
    return response


OPERATIONS = [
    Operation(
        "POST",
        "/session",
        sign_in,
        "Sign in: exchange a token for an HttpOnly session cookie (the web page's login)",
        "session",
        None,
        body=SignIn,
        response=SessionInfo,
    ),
    Operation(
        "GET",
        "/session",
        current,
        "The session of the request's cookie, with its CSRF token; 401 when there is none",
        "session",
        None,
        response=SessionInfo,
    ),
    Operation(
        "DELETE",
        "/session",
        sign_out,
        "Sign out: end the cookie's session (a write: needs the X-CSRF-Token header)",
        "session",
        None,
        status=204,
    ),
]
