"""Client connections built from Endpoints; the one place that knows how to log in."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import nats
import valkey.asyncio as valkey
from nats.aio.client import Client as NATS

from unity.compose.settings import Endpoints, redact

log = logging.getLogger(__name__)


async def connect_nats(ep: Endpoints, name: str, **options: Any) -> NATS:
    """Connect to NATS, reconnecting forever; credentials come from Endpoints, not the URL."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s", redact(ep.nats_url), exc)

    options.setdefault("max_reconnect_attempts", -1)
    options.setdefault("reconnect_time_wait", 0.5)
    return await nats.connect(
        servers=[ep.nats_url],
        user=ep.nats_user,
        password=ep.nats_password,
        name=name,
        error_cb=on_error,
        **options,
    )


async def pg_pool(ep: Endpoints, min_size: int = 1, max_size: int = 4) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        ep.database_url, password=ep.database_password, min_size=min_size, max_size=max_size
    )


async def pg_connect(ep: Endpoints) -> asyncpg.Connection:
    return await asyncpg.connect(ep.database_url, password=ep.database_password)


def valkey_client(ep: Endpoints) -> valkey.Valkey:
    client: valkey.Valkey = valkey.Valkey.from_url(
        ep.valkey_url,
        password=ep.valkey_password,
        socket_timeout=5,
        socket_connect_timeout=5,
        decode_responses=False,
    )
    return client
