"""Reading an app's HTTP API for a plugin: JSON or text, over TCP or a unix socket, stdlib only.

Plugins run ``collect`` in a worker thread, so these calls block on purpose. Tokens go in
headers (``Authorization``, ``X-Api-Key``...), never in the URL, and never in a message:
errors name the URL's scheme, host and path only.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Response", "WebApiError", "get", "get_json"]


class WebApiError(RuntimeError):
    """The API could not be reached or answered an error; ``status`` is 0 when unreached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise WebApiError(f"answer is not JSON: {exc}", self.status) from None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()  # a failed connect left it open: a ResourceWarning, a leaked fd
            raise
        self.sock = sock


def _where(url: urllib.parse.SplitResult) -> str:
    return f"{url.scheme}://{url.hostname or ''}{f':{url.port}' if url.port else ''}{url.path}"


def get(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    verify: bool = True,
    ca_file: str = "",
    unix_socket: str = "",
    method: str = "GET",
    body: bytes | None = None,
    ok: range = range(200, 300),
) -> Response:
    """One request; raises :class:`WebApiError` on a network error or a status outside ``ok``.

    Args:
        url: ``http(s)://host:port/path?query``; with ``unix_socket`` only path and query count.
        headers: Request headers (put tokens here).
        timeout: Seconds for connecting and for each read.
        verify: Check the server's certificate and name (off only for self-signed homelab apps).
        ca_file: A CA bundle to trust instead of the system's.
        unix_socket: Speak HTTP over this unix socket (the Docker engine, ...).
        method: ``GET`` unless the API wants ``POST``.
        body: The request body for ``POST``.
        ok: The statuses that are an answer rather than an error.
    """
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    conn: http.client.HTTPConnection
    if unix_socket:
        conn = _UnixConnection(unix_socket, timeout)
    elif parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file or None)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=context
        )
    elif parts.scheme == "http":
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    else:
        raise WebApiError(f"unsupported URL scheme {parts.scheme!r} (http or https)")
    where = f"unix:{unix_socket}{parts.path}" if unix_socket else _where(parts)
    try:
        conn.request(method, target, body=body, headers=dict(headers or {}))
        answer = conn.getresponse()
        data = answer.read()
    except (OSError, http.client.HTTPException) as exc:
        raise WebApiError(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
    if answer.status not in ok:
        raise WebApiError(f"{where} answered {answer.status} {answer.reason}", answer.status)
    return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)


def get_json(url: str, **kwargs: Any) -> Any:
    """:func:`get`, then the body as JSON."""
    return get(url, **kwargs).json()
