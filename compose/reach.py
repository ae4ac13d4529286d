"""Connections of one-shot commands (`unity token`, `unity dlq`, `unity status`): one try, and a
server that is down is one line naming it and what to do, never a traceback or a retry loop."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import nats
import nats.errors
from nats.aio.client import Client as NATS

from unity.sdk.connection import nats_tls, pg_connect
from unity.sdk.settings import Endpoints, redact

if TYPE_CHECKING:
    import asyncpg

CONNECT_TIMEOUT_S = 3.0
HINT = "is `unity up` running? (`unity status` shows what runs)"


class Unreachable(RuntimeError):
    """A server a command needs does not answer or refuses the login."""


async def nats_once(ep: Endpoints, name: str, hint: str = HINT) -> NATS:
    """NATS without reconnects: a command that finds it down says so and ends."""
    seen: list[Exception] = []

    async def keep(exc: Exception) -> None:
        # Raised below in one line, with the cause: nats-py's own report would be more lines.
        seen.append(exc)

    try:
        nc: NATS = await nats.connect(
            servers=ep.nats_servers,
            user=ep.nats_user,
            password=ep.nats_password,
            name=name,
            allow_reconnect=False,
            # nats-py still retries a first connect: once per server, without waiting long.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            connect_timeout=CONNECT_TIMEOUT_S,
            error_cb=keep,
            tls=nats_tls(ep),
        )
    except (OSError, nats.errors.Error) as exc:
        cause = seen[-1] if seen else exc
        raise Unreachable(
            f"cannot reach NATS at {redact(ep.nats_url)} ({_why(cause)})"
            + (f"; {hint}" if hint else "")
        ) from None
    return nc


async def pg_once(ep: Endpoints, hint: str = HINT) -> asyncpg.Connection:
    """One PostgreSQL connection, or Unreachable in one line."""
    import asyncpg

    try:
        return await asyncio.wait_for(pg_connect(ep), CONNECT_TIMEOUT_S * 2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Unreachable(
            f"cannot reach PostgreSQL at {redact(ep.database_url)} ({_why(exc)})"
            + (f"; {hint}" if hint else "")
        ) from None


def _why(exc: BaseException) -> str:
    # The type and the first line: a connection error's text can be several lines long.
    said = next((line for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__
