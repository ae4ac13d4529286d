"""What every home-app plugin shares: a base URL, a token from the environment or a file, TLS
verified by default (with a CA option), timeouts, and one-line errors that say "wrong token"
for 401/403 instead of a traceback.

Tokens go in headers only (``unity.collectors.webapi`` never prints them); a URL with
credentials in it is refused, since URLs end up in messages and logs.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from unity.collectors import command, webapi

__all__ = ["AppConfig", "AppError", "Client", "not_configured", "token"]


class AppError(RuntimeError):
    """The app could not be read; ``status`` is the HTTP status (0 when unreached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class AppConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The keys every HTTP app plugin takes (its own Config adds the rest)."""

    # http(s)://host:port of the app, with a path prefix when it sits behind one.
    url: str = ""
    # The API token (or password): from this environment variable, else the file's first line.
    token_env: str = ""
    token_file: str = ""
    verify_tls: bool = True
    ca_file: str = ""
    request_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.url:
            return
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be http(s)://host[:port][/prefix]")
        if parts.username or parts.password or parts.query:
            raise ValueError("url must not carry credentials or a query (use token_env/_file)")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be above 0")


def not_configured(config: AppConfig, *, needs_token: bool = True) -> str | None:
    """Why the plugin cannot run without asking the app (for ``unavailable``), or None."""
    if not config.url:
        return "no url configured"
    if not needs_token:
        return None
    if config.token_env and os.environ.get(config.token_env):
        return None
    if config.token_file and Path(config.token_file).is_file():
        return None
    if not config.token_env and not config.token_file:
        return "no token configured (token_env or token_file)"
    return f"no token in ${config.token_env or '-'} or {config.token_file or '-'}"


def token(config: AppConfig, app: str, *, required: bool = True) -> str:
    """The configured secret; an :class:`AppError` naming the keys when it is required."""
    try:
        secret = command.read_secret(config.token_env, config.token_file)
    except command.CommandError as exc:
        raise AppError(f"{app}: {exc}") from None
    if not secret and required:
        raise AppError(f"{app}: no token (set token_env or token_file)")
    return secret or ""


class Client:
    """Blocking requests to one app (plugins call it from ``collect``, in a worker thread)."""

    def __init__(
        self, app: str, config: AppConfig, headers: Mapping[str, str] | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.base = config.url.rstrip("/")
        self.headers = {"Accept": "application/json", **(headers or {})}

    def request(
        self,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        body: bytes | None = None,
        ok: range = range(200, 300),
    ) -> webapi.Response:
        if not self.base:
            raise AppError(f"{self.app}: no url configured")
        url = self.base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        try:
            return webapi.get(
                url,
                headers={**self.headers, **(headers or {})},
                timeout=self.config.request_timeout,
                verify=self.config.verify_tls,
                ca_file=self.config.ca_file,
                method=method,
                body=body,
                ok=ok,
            )
        except webapi.WebApiError as exc:
            if exc.status in (401, 403):
                raise AppError(
                    f"{self.app}: {path} answered {exc.status}: wrong or missing token"
                    " (or the account lacks the right)",
                    exc.status,
                ) from None
            raise AppError(f"{self.app}: {exc}", exc.status) from None

    def json(self, path: str, **kwargs: Any) -> Any:
        answer = self.request(path, **kwargs)
        try:
            return json.loads(answer.body)
        except ValueError:
            raise AppError(f"{self.app}: {path} did not answer JSON", answer.status) from None
