"""Client connections: the one place that knows how to log in to NATS, PostgreSQL and Valkey.

A standalone plugin finds NATS through environment variables only, never argv
(``ConnectionSettings``); services connect from resolved ``Endpoints``. asyncpg and valkey are
imported only when called: they belong to the ``server`` extra, which a collector-only install
lacks.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NATS

from unity.schemas import Subjects
from unity.sdk.settings import Endpoints, redact

if TYPE_CHECKING:
    import asyncpg
    import valkey.asyncio as valkey

__all__ = [
    "ConnectionSettings",
    "ConnectionSettingsError",
    "connect_nats",
    "pg_connect",
    "pg_pool",
    "valkey_client",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "nats://127.0.0.1:14222"


class ConnectionSettingsError(ValueError):
    """The NATS connection settings in the environment are unusable."""


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """NATS connection settings of a standalone plugin.

    Read from ``UNITY_NATS_URL``, ``UNITY_NATS_USER``, ``UNITY_NATS_PASSWORD`` or
    ``UNITY_NATS_CREDS`` (a ``.creds`` file), ``UNITY_SUBJECT_ROOT`` and ``UNITY_HOST_NAME``.
    Credentials never come from argv or the URL.

    Attributes:
        url: The server URL, without credentials.
        user: User name, or None.
        password: Password, or None; never logged.
        creds: Path of a NATS credentials file, or None.
        subject_root: First token of every subject (``unity``).
        host: Host name put on the data.
    """

    url: str = DEFAULT_URL
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    creds: str | None = None
    subject_root: str = "unity"
    host: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("nats", "tls", "ws", "wss"):
            raise ConnectionSettingsError(f"UNITY_NATS_URL {self.url!r} is not a nats:// URL")
        if parts.username or parts.password:
            raise ConnectionSettingsError(
                "UNITY_NATS_URL must not carry credentials: use UNITY_NATS_USER and "
                "UNITY_NATS_PASSWORD, or UNITY_NATS_CREDS"
            )
        if self.creds and self.password:
            raise ConnectionSettingsError("set UNITY_NATS_CREDS or UNITY_NATS_PASSWORD, not both")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConnectionSettings:
        """Build the settings from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        return cls(
            url=env.get("UNITY_NATS_URL") or DEFAULT_URL,
            user=env.get("UNITY_NATS_USER") or None,
            password=env.get("UNITY_NATS_PASSWORD") or None,
            creds=env.get("UNITY_NATS_CREDS") or None,
            subject_root=env.get("UNITY_SUBJECT_ROOT") or "unity",
            host=env.get("UNITY_HOST_NAME") or socket.gethostname(),
        )

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.subject_root)

    async def connect(
        self, name: str, on_reconnect: Callable[[], Awaitable[None]] | None = None
    ) -> NATS:
        """Connect, reconnecting forever; ``on_reconnect`` runs after every reconnection."""

        async def on_error(exc: Exception) -> None:
            log.warning("nats %s: %s", self.url, exc)

        async def reconnected() -> None:
            log.info("reconnected to %s", self.url)
            if on_reconnect is not None:
                await on_reconnect()

        return await nats.connect(
            servers=[self.url],
            user=self.user,
            password=self.password,
            user_credentials=self.creds,
            name=name,
            error_cb=on_error,
            reconnected_cb=reconnected,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
        )


async def connect_nats(ep: Endpoints, name: str, **options: Any) -> NATS:
    """Connect a service to NATS, reconnecting forever.

    Credentials come from ``ep``, never from the URL.

    Args:
        ep: The resolved endpoints.
        name: Connection name shown by the server.
        **options: Further ``nats.connect`` options.

    Returns:
        The connected client.
    """

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
    """A PostgreSQL pool from ``ep`` (needs the ``server`` extra)."""
    import asyncpg

    return await asyncpg.create_pool(
        ep.database_url, password=ep.database_password, min_size=min_size, max_size=max_size
    )


async def pg_connect(ep: Endpoints) -> asyncpg.Connection:
    """One PostgreSQL connection from ``ep`` (needs the ``server`` extra)."""
    import asyncpg

    return await asyncpg.connect(ep.database_url, password=ep.database_password)


def valkey_client(ep: Endpoints) -> valkey.Valkey:
    """A Valkey client from ``ep`` (needs the ``server`` extra)."""
    import valkey.asyncio as valkey

    client: valkey.Valkey = valkey.Valkey.from_url(
        ep.valkey_url,
        password=ep.valkey_password,
        socket_timeout=5,
        socket_connect_timeout=5,
        decode_responses=False,
    )
    return client
