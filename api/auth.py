"""Bearer-token checks with scopes; lookups cached so a read costs no database trip.

The cache is dropped whenever api_tokens changes (a NOTIFY from migration 0005's trigger), so a
revoked token stops working at once in every API process. While that notification channel is
down, lookups bypass the cache.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from starlette.requests import Request

from unity.api.errors import ApiError
from unity.api.tokens import digest, grants
from unity.api.web.session import COOKIE as SESSION_COOKIE
from unity.api.web.session import session_token
from unity.schemas.api import Scope

log = logging.getLogger(__name__)

# Bounds how long a grant is cached at all (expiry is checked on every use regardless).
CACHE_TTL_S = 60.0
# The channel migration 0005 notifies on any change to a token's validity.
CHANNEL = "unity_tokens"
_RELISTEN_S = 5.0
_CACHE_MAX = 10_000
_TOUCH_EVERY_S = 60.0
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="unity"'}


@dataclass(slots=True)
class Grant:
    id: int
    name: str
    token_hash: bytes
    scopes: list[str]
    expires_at: datetime | None
    touched: float = 0.0


class Authenticator:
    def __init__(self, pool: asyncpg.Pool, open_reads: bool) -> None:
        self.pool = pool
        self.open_reads = open_reads
        self._cache: dict[bytes, tuple[Grant | None, float]] = {}
        self._listener: asyncpg.pool.PoolConnectionProxy | None = None
        self._relisten_at = 0.0
        # Bumped by every change notice: a lookup that began before one must not cache.
        self._generation = 0

    async def start(self) -> None:
        """Listen for token changes; lookups are not cached until this works."""
        if self._listener is not None:
            return
        self._relisten_at = time.monotonic() + _RELISTEN_S
        conn = None
        try:
            conn = await self.pool.acquire()
            await conn.add_listener(CHANNEL, self._changed)
            conn.add_termination_listener(self._lost)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("not caching tokens: cannot listen for token changes: %s", exc)
            if conn is not None:
                await self._release(conn)
            return
        self._listener = conn
        self._changed()

    async def stop(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await conn.remove_listener(CHANNEL, self._changed)
            await self._release(conn)

    async def _release(self, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.pool.release(conn)

    def _changed(self, *_: object) -> None:
        self._generation += 1
        self._cache.clear()

    def _lost(self, *_: object) -> None:
        log.warning("lost the token change channel; checking every token in the database")
        self._listener = None
        self._changed()

    async def check(self, request: Request, needed: Scope) -> Grant | None:
        """The caller's grant; raises 401 without a valid token, 403 without the scope."""
        header = request.headers.get("authorization", "")
        if not header and SESSION_COOKIE in request.cookies:
            # The web page's session stands for its token: same scopes, revocation and expiry.
            grant = await self._lookup(await session_token(self.pool, request))
            if grant is None:
                raise ApiError(401, "unauthorized", "the session's token was revoked or expired")
            if not grants(grant.scopes, needed):
                raise ApiError(403, "forbidden", f"token {grant.name!r} lacks the {needed!r} scope")
            return grant
        if not header:
            if needed == "read" and self.open_reads:
                return None
            raise ApiError(401, "unauthorized", "this endpoint needs a bearer token", _CHALLENGE)
        kind, _, secret = header.partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            raise ApiError(401, "unauthorized", "use 'Authorization: Bearer <token>'", _CHALLENGE)
        grant = await self._lookup(digest(secret.strip()))
        if grant is None:
            raise ApiError(401, "unauthorized", "unknown, revoked or expired token", _CHALLENGE)
        if not grants(grant.scopes, needed):
            raise ApiError(403, "forbidden", f"token {grant.name!r} lacks the {needed!r} scope")
        return grant

    async def _lookup(self, token_hash: bytes) -> Grant | None:
        now = time.monotonic()
        if self._listener is None and now >= self._relisten_at:
            await self.start()
        cached = self._cache.get(token_hash)
        if cached is not None and cached[1] > now:
            grant = cached[0]
        else:
            generation = self._generation
            grant = await self._fetch(token_hash)
            if self._listener is not None and generation == self._generation:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[token_hash] = (grant, now + CACHE_TTL_S)
        if grant is None or not hmac.compare_digest(grant.token_hash, token_hash):
            return None
        if grant.expires_at is not None and grant.expires_at <= datetime.now(UTC):
            return None
        if now - grant.touched > _TOUCH_EVERY_S:
            grant.touched = now
            await self.pool.execute(
                "UPDATE api_tokens SET last_used_at = now() WHERE id = $1", grant.id
            )
        return grant

    async def _fetch(self, token_hash: bytes) -> Grant | None:
        row = await self.pool.fetchrow(
            "SELECT id, name, token_hash, scopes, expires_at FROM api_tokens"
            " WHERE token_hash = $1 AND revoked_at IS NULL",
            token_hash,
        )
        if row is None:
            return None
        return Grant(row["id"], row["name"], row["token_hash"], row["scopes"], row["expires_at"])
