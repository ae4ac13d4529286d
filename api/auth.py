"""Bearer-token checks with scopes; lookups cached briefly so a read costs no database trip."""

from __future__ import annotations

import hmac
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

# A revoked token stops working within this many seconds on every API replica.
CACHE_TTL_S = 5.0
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
        cached = self._cache.get(token_hash)
        if cached is not None and cached[1] > now:
            grant = cached[0]
        else:
            grant = await self._fetch(token_hash)
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
