"""Client connections: the one place that knows how to log in to NATS, PostgreSQL and Valkey.

A standalone plugin finds NATS through environment variables only, never argv
(``ConnectionSettings``); services connect from resolved ``Endpoints``. asyncpg and valkey are
imported only when called: they belong to the ``server`` extra, which a collector-only install
lacks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NATS

from unity.schemas import Subjects
from unity.sdk.settings import Endpoints, Secrets, Settings, load_settings

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
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# How nats-server words a login it refuses (in -ERR, or an AuthorizationError).
_AUTH_VIOLATION = "authorization"


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
        """Build the settings from ``env`` (default: the process environment).

        Read through the settings loader every Unity process uses (``UNITY_CONFIG`` and
        ``UNITY_*``), see :meth:`from_settings`.
        """
        env = os.environ if env is None else env
        return cls.from_settings(load_settings(env=env), env)

    @classmethod
    def from_settings(
        cls, settings: Settings, env: Mapping[str, str] | None = None
    ) -> ConnectionSettings:
        """NATS of ``settings``: ``UNITY_NATS_URL`` with ``UNITY_NATS_USER`` and
        ``UNITY_NATS_PASSWORD`` or ``UNITY_NATS_CREDS``; without a URL, the embedded server of
        ``unity up`` in the data folder, logged in with the credentials it generated there
        (as the collector and ``unity token`` do). Credentials in ``env`` win over stored ones.
        """
        env = os.environ if env is None else env
        user = env.get("UNITY_NATS_USER") or None
        password = env.get("UNITY_NATS_PASSWORD") or None
        creds = env.get("UNITY_NATS_CREDS") or None
        url = settings.nats_url
        if not url:
            url = f"nats://127.0.0.1:{settings.nats_port}"
            stored = settings.data_path / "secrets.json"
            if not (user or password or creds) and stored.is_file():
                embedded = Secrets.load_or_create(settings.data_path)
                user, password = embedded.nats_user, embedded.nats_password
        return cls(
            url=url,
            user=user,
            password=password,
            creds=creds,
            subject_root=settings.subject_root,
            host=settings.host,
        )

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.subject_root)

    async def connect(
        self, name: str, on_reconnect: Callable[[], Awaitable[None]] | None = None
    ) -> NATS:
        """Connect, reconnecting forever; ``on_reconnect`` runs after every reconnection.

        Raises:
            ConnectionSettingsError: the server refused the credentials on the first
                connection (retrying could not help).
        """
        refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_error(exc: Exception) -> None:
            log.warning("nats %s: %s", self.url, exc)
            if _AUTH_VIOLATION in str(exc).lower() and not refused.done():
                refused.set_result(str(exc))

        async def reconnected() -> None:
            log.info("reconnected to %s", self.url)
            if on_reconnect is not None:
                await on_reconnect()

        connecting = asyncio.create_task(
            nats.connect(
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
        )
        either: set[asyncio.Future[Any]] = {connecting, refused}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if connecting.done():
            return connecting.result()
        connecting.cancel()
        raise ConnectionSettingsError(
            f"{self.url} refused the credentials ({refused.result()}): check UNITY_NATS_USER"
            " and UNITY_NATS_PASSWORD or UNITY_NATS_CREDS, or the data folder of `unity up`"
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

    servers = ep.nats_servers
    holder: list[NATS] = []
    last: dict[str, str] = {}

    def node() -> str:
        nc = holder[0] if holder else None
        url = nc.connected_url if nc is not None else None
        return f"{url.hostname}:{url.port}" if url is not None else "no node"

    async def on_error(exc: Exception) -> None:
        # Said once per kind of error and node, not per attempt (a node down for a minute
        # would otherwise log twice a second).
        what = f"{type(exc).__name__}: {exc}"
        if last.get("error") != what:
            last["error"] = what
            log.warning("nats (%s, %s): %s", name, node(), what)

    # The caller's own callbacks (the collector's, the tests') run after ours.
    then_disconnected = options.pop("disconnected_cb", None)
    then_reconnected = options.pop("reconnected_cb", None)

    async def on_disconnect() -> None:
        nc = holder[0] if holder else None
        # A close of our own also passes through here: only a lost link is worth a warning.
        if nc is not None and not (nc.is_closed or nc.is_draining):
            log.warning("nats (%s): disconnected from %s, reconnecting", name, last.get("node"))
        if then_disconnected is not None:
            await then_disconnected()

    async def on_reconnect() -> None:
        last["node"] = node()
        last.pop("error", None)
        log.info("nats (%s): reconnected to %s", name, last["node"])
        if then_reconnected is not None:
            await then_reconnected()

    options.setdefault("max_reconnect_attempts", -1)
    options.setdefault("reconnect_time_wait", 0.5)
    if ep.nats_user and _TOKEN.match(ep.nats_user):
        # Replies to this user arrive under its own prefix: a collector host's credential may
        # read only _INBOX.<host>.> (see compose/natsusers.py), never another client's replies.
        options.setdefault("inbox_prefix", f"_INBOX.{ep.nats_user}")
    context = nats_tls(ep)
    if context is not None:
        options.setdefault("tls", context)
    nc = await nats.connect(
        servers=servers,
        user=ep.nats_user,
        password=ep.nats_password,
        name=name,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        **options,
    )
    holder.append(nc)
    last["node"] = node()
    return nc


def nats_tls(ep: Endpoints) -> ssl.SSLContext | None:
    """The TLS context for NATS: verification against ``nats_ca`` (else the system's CAs)
    and ``nats_cert``/``nats_key`` for mutual TLS; None when no URL is ``tls://`` and no CA
    is set (plain loopback)."""
    if not (ep.nats_ca or any(u.startswith("tls://") for u in ep.nats_servers)):
        return None
    context = ssl.create_default_context(cafile=ep.nats_ca)
    if ep.nats_cert:
        context.load_cert_chain(ep.nats_cert, ep.nats_key)
    return context


def _pg_ssl(ep: Endpoints) -> ssl.SSLContext | None:
    # With a CA, verify-full: the chain and the host name (the DSN's sslmode=verify-full
    # with sslrootcert does the same without one).
    return ssl.create_default_context(cafile=ep.database_ca) if ep.database_ca else None


async def pg_pool(
    ep: Endpoints,
    min_size: int = 1,
    max_size: int = 4,
    server_settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    """A PostgreSQL pool from ``ep`` (needs the ``server`` extra); ``server_settings`` are
    set on each of its connections."""
    import asyncpg

    return await asyncpg.create_pool(
        ep.database_url,
        password=ep.database_password,
        min_size=min_size,
        max_size=max_size,
        ssl=_pg_ssl(ep),
        server_settings=server_settings,
    )


async def pg_connect(ep: Endpoints) -> asyncpg.Connection:
    """One PostgreSQL connection from ``ep`` (needs the ``server`` extra)."""
    import asyncpg

    return await asyncpg.connect(ep.database_url, password=ep.database_password, ssl=_pg_ssl(ep))


def valkey_client(ep: Endpoints) -> valkey.Valkey:
    """A Valkey client from ``ep`` (needs the ``server`` extra)."""
    import valkey.asyncio as valkey

    tls: dict[str, Any] = {}
    if urlsplit(ep.valkey_url).scheme in ("valkeys", "rediss"):
        # Verified against valkey_ca (else the system's CAs), host name included.
        tls = {"ssl_ca_certs": ep.valkey_ca, "ssl_cert_reqs": "required"}
    elif ep.valkey_ca:
        raise ValueError("UNITY_VALKEY_CA is set but UNITY_VALKEY_URL is not valkeys://")
    client: valkey.Valkey = valkey.Valkey.from_url(
        ep.valkey_url,
        password=ep.valkey_password,
        socket_timeout=5,
        socket_connect_timeout=5,
        decode_responses=False,
        **tls,
    )
    return client
