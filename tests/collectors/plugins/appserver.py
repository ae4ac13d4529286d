"""A local HTTP(S) server for the home-app plugins: routes answer recorded JSON, each request
is kept (method, path with query, headers, body) so a test can check what was sent.

A route is looked up as "METHOD /path?query", "/path?query", "METHOD /path", then "/path"."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Route = Any  # a JSON-able body (status 200), a Reply, or a callable(Request) -> Reply


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class App:
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Request] = field(default_factory=list)
    url: str = ""

    def paths(self) -> list[str]:
        return [r.path for r in self.seen]


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def _answer(self) -> None:
        app: App = self.server.app  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(self.command, self.path, dict(self.headers), self.rfile.read(length))
        app.seen.append(request)
        bare = self.path.split("?")[0]
        keys = (f"{self.command} {self.path}", self.path, f"{self.command} {bare}", bare)
        route = next((app.routes[k] for k in keys if k in app.routes), None)
        if route is None:
            reply: Reply = (404, {"error": "not found"})
        elif callable(route):
            reply = route(request)
        elif isinstance(route, tuple):
            reply = route
        else:
            reply = (200, route)
        status, body, *more = reply
        headers = more[0] if more else {}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        if "Content-Type" not in headers:
            self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def serve(routes: dict[str, Route], tls: Any = None) -> Iterator[App]:
    """Serve ``routes`` on 127.0.0.1 (TLS with ``tls``, an ``ssl.SSLContext``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    app = App(dict(routes))
    server.app = app  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    app.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def bearer(token: str, body: Any) -> Callable[[Request], Reply]:
    """A route answering ``body`` only with ``Authorization: Bearer <token>``, else 401."""

    def route(request: Request) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return (401, {"message": "Invalid authentication"})
        return (200, body)

    return route
