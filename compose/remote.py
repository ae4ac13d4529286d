"""Collectors on other machines feeding an embedded hub (`unity up --listen ADDR`).

`unity collector add <host>` gives the host a NATS login of its own that may publish only that
host's subjects (compose.natsusers), has a running hub take it at once (a reload, no restart),
and prints the one line that starts the collector over there. The line carries the password
and the hub's CA into 0600 files through shell builtins, so the secret is never on a
command line nor in a URL.
"""

from __future__ import annotations

import base64
import socket

import msgspec

from unity.compose.embedded import NatsServer, listen_record
from unity.schemas.validate import token
from unity.sdk.settings import Secrets, Settings

_WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 -- compared, not bound


class RemoteError(RuntimeError):
    """The hub cannot take remote collectors as asked."""


def remote_url(settings: Settings) -> str:
    """Where other machines reach `unity up --listen`'s NATS (a wildcard: this host's name)."""
    host = settings.nats_listen
    if host in _WILDCARDS:
        host = socket.getfqdn()
    elif ":" in host:
        host = f"[{host}]"
    return f"tls://{host}:{settings.nats_port}"


def add_collector(settings: Settings, host: str) -> tuple[str, bool]:
    """Add ``host``'s login (or keep the one it has); returns the line to run there and whether
    a running hub took the login already."""
    from unity.compose.natsusers import NatsUsersError, UserStore

    if settings.nats_url:
        raise RemoteError(
            "this hub uses an external NATS (UNITY_NATS_URL): add the host there with "
            "`unity nats add-host`"
        )
    if not settings.nats_listen and listen_record(settings.data_path).exists():
        listen = listen_record(settings.data_path).read_text().strip()
        settings = msgspec.structs.replace(settings, nats_listen=listen)
    if not settings.nats_listen:
        raise RemoteError(
            "the hub's NATS listens on loopback only: start it with `unity up --listen ADDR` "
            "(or set UNITY_NATS_LISTEN), then add collectors"
        )
    name = token(host)
    data = settings.data_path
    if not (data / "secrets.json").exists():
        raise RemoteError(f"no `unity up` has run on {data}; start the hub first")
    store = UserStore(data / "secrets", settings.subject_root)
    try:
        if not store.load():
            store.init()
        if not any(u.name == name for u in store.load()):
            store.add_host(name)
    except NatsUsersError as exc:
        raise RemoteError(str(exc)) from None
    secrets = Secrets.load_or_create(data)
    server = NatsServer(
        data,
        settings.nats_port,
        secrets.nats_user,
        secrets.nats_password,
        listen=settings.nats_listen,
        root=settings.subject_root,
    )
    taken = server.reload()
    password = store.password_path(name).read_text().strip()
    ca = (server.tls_folder / "ca.crt").read_bytes()
    return _line(settings, host, name, password, ca), taken


def _line(settings: Settings, host: str, user: str, password: str, ca: bytes) -> str:
    folder = "~/.config/unity"
    env = {
        "UNITY_NATS_URL": remote_url(settings),
        "UNITY_NATS_CA": "$HOME/.config/unity/ca.crt",
        "UNITY_NATS_USER": user,
        "UNITY_NATS_PASSWORD_FILE": "$HOME/.config/unity/nats.password",
        "UNITY_HOST_NAME": host,
        "UNITY_DATA_DIR": "$HOME/.config/unity/data",
    }
    if settings.subject_root != "unity":
        env["UNITY_SUBJECT_ROOT"] = settings.subject_root
    # The password is a token_urlsafe string and the CA travels as base64: both shell-safe.
    return (
        f"umask 077 && mkdir -p {folder} && echo '{password}' > {folder}/nats.password"
        f" && echo '{base64.b64encode(ca).decode()}' | base64 -d > {folder}/ca.crt"
        f" && {' '.join(f'{k}={v}' for k, v in env.items())} unity collector"
    )
