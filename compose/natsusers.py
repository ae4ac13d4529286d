"""NATS users per role and per collector host, with the permissions each one needs and no more.

A collector host may publish only its own subjects (``<root>.{metrics,events,health}.<host>.>``)
and read the plugin-config bucket; it cannot publish as another host, read the DLQ, or touch
a stream's definition. Roles (ingest, api, alerts) get what their service uses and never
stream deletion or purge; ``admin`` may do anything (the operator, `unity up`'s own children).

The server keeps only bcrypt hashes (``users.conf``); each password is written once to a 0600
file for the one service or host that uses it. ``state.json`` beside them keeps the hashes and
permissions so that adding a host rewrites ``users.conf`` without knowing the other passwords;
nats-server takes the new file on a reload signal (SIGHUP), without a restart.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

ROLES = ("ingest", "api", "alerts", "admin")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# JetStream API calls that remove data: no role but admin may make them.
_DESTRUCTIVE = [
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
]


class NatsUsersError(ValueError):
    """A user name is unusable, already taken, or the state file is missing."""


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    publish: list[str]
    subscribe: list[str]
    deny_publish: list[str] = field(default_factory=list)
    kind: str = "role"  # or "host"


def inbox(user: str) -> str:
    """The inbox prefix a user's replies arrive on (a host may read only its own)."""
    return f"_INBOX.{user}"


def permissions(kind: str, name: str, root: str) -> tuple[list[str], list[str], list[str]]:
    """(publish allowed, subscribe allowed, publish denied) for a role or a host."""
    kv = f"KV_{root.upper()}_PLUGIN_CONFIG"
    if kind == "host":
        own = [f"{root}.{what}.{name}.>" for what in ("metrics", "events", "health")]
        config = [
            "$JS.API.INFO",
            f"$JS.API.STREAM.INFO.{kv}",
            f"$JS.API.CONSUMER.CREATE.{kv}",
            f"$JS.API.CONSUMER.CREATE.{kv}.>",
            f"$JS.API.CONSUMER.DELETE.{kv}.>",
            f"$JS.API.DIRECT.GET.{kv}.>",
            f"$JS.API.STREAM.MSG.GET.{kv}",
            "$JS.FC.>",
        ]
        return [*own, *config], [f"{inbox(name)}.>"], []
    if kind != "role" or name not in ROLES:
        raise NatsUsersError(f"unknown role {name!r} (one of {', '.join(ROLES)})")
    if name == "admin":
        return [">"], [">"], []
    service = {
        "ingest": [f"{root}.dlq.>", f"{root}.*.*.unity-ingest"],
        "api": [f"{root}.metrics.>", f"{root}.events.>", f"{root}.health.>", "$KV.>"],
        "alerts": [f"{root}.alerts.>", f"{root}.*.*.unity-alerts"],
    }[name]
    return (
        ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", *service],
        ["_INBOX.>", f"{root}.>"],
        list(_DESTRUCTIVE),
    )


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=11)).decode()


def _quote(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid NATS config string


def render(users: list[User]) -> str:
    """The ``users: [...]`` block nats.conf includes inside ``authorization {}``."""
    lines = [
        "# Written by `unity nats users` / `unity nats add-host`: edit with those.",
        "users: [",
    ]
    for user in users:
        perms = [
            f"publish: {{allow: [{', '.join(map(_quote, user.publish))}]"
            + (
                f", deny: [{', '.join(map(_quote, user.deny_publish))}]"
                if user.deny_publish
                else ""
            )
            + "}",
            f"subscribe: {{allow: [{', '.join(map(_quote, user.subscribe))}]}}",
        ]
        lines.append(
            f"  {{user: {_quote(user.name)}, password: {_quote(user.password_hash)}, "
            f"permissions: {{{', '.join(perms)}}}}}"
        )
    lines.append("]")
    return "\n".join(lines) + "\n"


@dataclass
class UserStore:
    """``users.conf``, ``state.json`` and the password files in one folder (0700)."""

    folder: Path
    root: str = "unity"

    @property
    def state_path(self) -> Path:
        return self.folder / "nats-users.json"

    @property
    def conf_path(self) -> Path:
        return self.folder / "nats-users.conf"

    def password_path(self, name: str) -> Path:
        return self.folder / f"nats-{name}.password"

    def load(self) -> list[User]:
        if not self.state_path.exists():
            return []
        raw: list[dict[str, Any]] = json.loads(self.state_path.read_text())
        return [User(**item) for item in raw]

    def _save(self, users: list[User]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(self.state_path, json.dumps([asdict(u) for u in users], indent=1) + "\n")
        _write(self.conf_path, render(users))

    def _add(self, users: list[User], kind: str, name: str) -> User:
        if not _NAME.match(name):
            raise NatsUsersError(f"{name!r} is not a usable user name ([A-Za-z0-9_-], 1-64)")
        if any(u.name == name for u in users):
            raise NatsUsersError(f"a NATS user named {name!r} exists already")
        password = secrets.token_urlsafe(24)
        publish, subscribe, deny = permissions(kind, name, self.root)
        user = User(name, _hash(password), publish, subscribe, deny, kind)
        _write(self.password_path(name), password + "\n")
        return user

    def init(self) -> list[User]:
        """The four role users; refuses when the folder has users already."""
        if self.load():
            raise NatsUsersError(f"{self.state_path} exists: add hosts with `unity nats add-host`")
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        users = [self._add([], "role", role) for role in ROLES]
        self._save(users)
        return users

    def add_host(self, host: str) -> User:
        """A collector host's user; the server takes it on its next reload (SIGHUP)."""
        users = self.load()
        if not users:
            raise NatsUsersError(f"no users in {self.folder}: run `unity nats users` first")
        user = self._add(users, "host", host)
        self._save([*users, user])
        return user

    def remove(self, name: str) -> None:
        users = [u for u in self.load() if u.name != name]
        self._save(users)
        self.password_path(name).unlink(missing_ok=True)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)
