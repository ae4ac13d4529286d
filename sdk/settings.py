"""Process settings: a TOML file, then ``UNITY_*`` environment variables; frozen once built.

The one settings loader of every process (collector, plugin runner, ingest, api, alerts). It
imports only ``schemas``, so any service may import it without the CLI package.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from unity.schemas import Subjects

ENV_PREFIX = "UNITY_"


class SettingsError(ValueError):
    """The configuration is invalid; the message names the key."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    data_dir: str = ".unity"
    host_name: str = ""
    # An empty URL means "run the embedded server from the pip wheel".
    nats_url: str = ""
    database_url: str = ""
    valkey_url: str = ""
    nats_port: int = 14222
    # `unity up --listen ADDR`: the embedded NATS listens on ADDR (beyond loopback) for remote
    # collectors, with TLS from the data folder's own CA and a login per host.
    nats_listen: str = ""
    postgres_port: int = 15432
    valkey_port: int = 16379
    api_bind: str = "127.0.0.1"
    api_port: int = 8765
    # TLS: CA files that verify each server (setting one turns verification on for that
    # link), a client certificate for NATS mutual TLS, and the API's own certificate (HTTPS).
    nats_ca: str = ""
    nats_cert: str = ""
    nats_key: str = ""
    database_ca: str = ""
    valkey_ca: str = ""
    api_tls_cert: str = ""
    api_tls_key: str = ""
    subject_root: str = "unity"
    collect_interval: float = 10.0
    # Empty: every built-in plugin that applies on this host (`unity collector --list`).
    collect_plugins: tuple[str, ...] = ()
    stream_max_age_s: float = 7 * 86400.0
    stream_max_bytes: int = 4 * 1024**3
    stream_duplicate_window_s: float = 120.0
    stream_replicas: int = 1
    ingest_fetch: int = 500
    ingest_max_ack_pending: int = 100_000
    # How long a delivered, unacked message waits before JetStream gives it to another worker:
    # the gap a crashed worker leaves on the dashboards. A batch that takes longer sends
    # in_progress() every third of it, so a slow commit is not done twice.
    ingest_ack_wait_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    # Deliveries of one message before JetStream stops and ingest dead-letters it
    # (max_deliveries): a message that kills or stalls its worker never loops.
    ingest_max_deliver: Annotated[int, msgspec.Meta(ge=2)] = 10
    # Concurrent fetch loops per worker on the metrics consumer (one decodes while one commits),
    # and how often a worker publishes its own metrics as plugin `unity-ingest` (0: never).
    ingest_pullers: int = 2
    ingest_report_interval_s: float = 10.0
    # Alerts (`unity alerts`): rule files read at start (TOML, `[[rule]]`), whether the default
    # rule pack is added, how long changes wait to be grouped into one notification, how
    # often a failed delivery is tried (backoff doubling from alerts_retry_s), how often the
    # evaluator publishes its own metrics as plugin `unity-alerts` (0: never).
    alerts_rule_files: tuple[str, ...] = ()
    alerts_default_rules: bool = True
    alerts_group_wait_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 0.2
    alerts_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    alerts_retry_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    alerts_report_interval_s: float = 10.0
    # Reads need a token unless this is set; writes and admin always need one.
    api_open_reads: bool = False
    api_max_body_bytes: int = 1024 * 1024
    api_max_points: int = 250_000
    api_stream_queue: int = 256
    api_stream_heartbeat_s: float = 15.0
    # Processes serving the API (it is stateless): more than one uses more than one core.
    api_workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    # Storage: how long each resolution is kept (whole days/chunks are dropped once older),
    # how far ahead day partitions exist, how often `unity maintain` runs, and how far back
    # each rollup run recomputes closed buckets to take in late samples.
    retention_raw_days: Annotated[float, msgspec.Meta(ge=1)] = 30.0
    retention_1m_days: Annotated[float, msgspec.Meta(ge=1)] = 90.0
    retention_5m_days: Annotated[float, msgspec.Meta(ge=1)] = 365.0
    retention_1h_days: Annotated[float, msgspec.Meta(ge=1)] = 730.0
    partitions_ahead_days: Annotated[int, msgspec.Meta(ge=1, le=60)] = 3
    maintain_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    rollup_lookback_s: Annotated[float, msgspec.Meta(ge=0)] = 600.0
    # PostgreSQL refuses to run as root: the embedded server then runs as this account.
    postgres_os_user: str = "nobody"
    log_level: str = "INFO"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def host(self) -> str:
        return self.host_name or socket.gethostname()

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.subject_root)


_FIELDS = set(Settings.__struct_fields__)


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from an optional TOML file, the environment, then explicit overrides."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    config_path = path or env.get("UNITY_CONFIG")
    if config_path:
        try:
            raw.update(tomllib.loads(Path(config_path).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {config_path}: {exc}") from exc
        unknown = sorted(set(raw) - _FIELDS)
        if unknown:
            raise SettingsError(f"unknown key {unknown[0]!r} in config file {config_path}")
    for key, value in env.items():
        if key.startswith(ENV_PREFIX):
            field = key[len(ENV_PREFIX) :].lower()
            if field in _FIELDS:
                raw[field] = (
                    [v for v in value.split(",") if v.strip()]
                    if field in ("collect_plugins", "alerts_rule_files")
                    else value
                )
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid settings: {exc}") from exc


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``UNITY_*`` variables that rebuild them in a child process:
    ``load_settings(env=settings_env(s)) == s``. The one way settings reach children (`unity up`'s
    services, `unity ingest --workers`): lists comma-joined, booleans ``true``/``false``, the
    data folder absolute; ``UNITY_CONFIG`` is not passed (the values are already in)."""
    env: dict[str, str] = {}
    for key, value in msgspec.structs.asdict(settings).items():
        if isinstance(value, tuple | list):
            text = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"{ENV_PREFIX}{key.upper()}"] = text
    env[f"{ENV_PREFIX}DATA_DIR"] = str(settings.data_path)
    return env


@dataclass(frozen=True, slots=True)
class Secrets:
    """Credentials of the embedded servers, generated on first start, kept 0600 in the data dir."""

    nats_user: str
    nats_password: str
    postgres_password: str
    valkey_password: str

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Secrets:
        path = data_dir / "secrets.json"
        if path.exists():
            return cls(**json.loads(path.read_text()))
        data_dir.mkdir(parents=True, exist_ok=True)
        created = cls(
            nats_user="unity",
            nats_password=secrets.token_urlsafe(24),
            postgres_password=secrets.token_urlsafe(24),
            valkey_password=secrets.token_urlsafe(24),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {
                    "nats_user": created.nats_user,
                    "nats_password": created.nats_password,
                    "postgres_password": created.postgres_password,
                    "valkey_password": created.valkey_password,
                },
                fh,
            )
        return created


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the three servers are and how to log in. Passwords never go into URLs or logs."""

    nats_url: str
    nats_user: str | None
    nats_password: str | None
    database_url: str
    database_password: str | None
    valkey_url: str
    valkey_password: str | None
    nats_ca: str | None = None
    nats_cert: str | None = None
    nats_key: str | None = None
    database_ca: str | None = None
    valkey_ca: str | None = None

    @property
    def nats_servers(self) -> list[str]:
        """The NATS URLs: ``UNITY_NATS_URL`` may list several nodes, comma-separated."""
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    def describe(self) -> dict[str, str]:
        """The URLs with any credentials removed, safe to print."""
        return {
            "nats": redact(self.nats_url),
            "postgres": redact(self.database_url),
            "valkey": redact(self.valkey_url),
        }


# Schemes whose clients read a user name without a password as a token (nats-py does).
_TOKEN_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
# Query parameters that carry a secret (libpq and asyncpg accept ?password=...).
_SECRET_PARAMS = frozenset({"password", "sslpassword", "token", "auth_token"})


def redact(url: str) -> str:
    """Hide the secrets in a URL: a password, a NATS token, secret query parameters.

    A user name without a password is not a secret and stays.
    """
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        if colon:
            userinfo = f"{user}:***"
        elif parts.scheme in _TOKEN_SCHEMES:
            userinfo = "***"
    query = "&".join(
        f"{key}=***" if key.lower() in _SECRET_PARAMS and sep else f"{key}{sep}{value}"
        for key, sep, value in (field.partition("=") for field in parts.query.split("&"))
    )
    netloc = f"{userinfo}@{hostport}" if at else hostport
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secret(env: Mapping[str, str], name: str) -> str | None:
    """``env[name]``, else the first line of the file ``env[name + "_FILE"]`` (Docker secrets).

    Raises:
        SettingsError: the file is named but cannot be read (its content is never shown).
    """
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SettingsError(f"cannot read {name}_FILE {path}: {exc.strerror}") from None
    return lines[0].strip() if lines else ""


def embedded_nats_url(settings: Settings) -> str:
    """The URL of `unity up`'s own NATS: loopback, or TLS on the ``nats_listen`` address."""
    if not settings.nats_listen:
        return f"nats://127.0.0.1:{settings.nats_port}"
    host = settings.nats_listen
    if host in ("0.0.0.0", "::"):  # noqa: S104 -- compared, not bound
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"tls://{host}:{settings.nats_port}"


def embedded_nats_ca(settings: Settings) -> str | None:
    """The CA `unity up --listen` made in the data folder, which signs its NATS certificate."""
    if settings.nats_url or not settings.nats_listen:
        return None
    return str(settings.data_path / "tls" / "ca.crt")


def endpoints(settings: Settings, env: Mapping[str, str] | None = None) -> Endpoints:
    """Resolve the servers: external URLs where given, else the embedded ones in the data dir."""
    env = os.environ if env is None else env
    embedded = not (settings.nats_url and settings.database_url and settings.valkey_url)
    sec = Secrets.load_or_create(settings.data_path) if embedded else None
    if settings.nats_url:
        nats = (settings.nats_url, env.get("UNITY_NATS_USER"), secret(env, "UNITY_NATS_PASSWORD"))
    else:
        assert sec is not None
        nats = (embedded_nats_url(settings), sec.nats_user, sec.nats_password)
    if settings.database_url:
        pg = (settings.database_url, secret(env, "UNITY_DATABASE_PASSWORD"))
    else:
        assert sec is not None
        pg = (
            f"postgresql://unity@127.0.0.1:{settings.postgres_port}/unity",
            sec.postgres_password,
        )
    if settings.valkey_url:
        vk = (settings.valkey_url, secret(env, "UNITY_VALKEY_PASSWORD"))
    else:
        assert sec is not None
        vk = (f"valkey://127.0.0.1:{settings.valkey_port}/0", sec.valkey_password)
    return Endpoints(
        *nats,
        *pg,
        *vk,
        nats_ca=settings.nats_ca or embedded_nats_ca(settings),
        nats_cert=settings.nats_cert or None,
        nats_key=settings.nats_key or None,
        database_ca=settings.database_ca or None,
        valkey_ca=settings.valkey_ca or None,
    )
