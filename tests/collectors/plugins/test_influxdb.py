"""influxdb against a local fake of the InfluxDB 2 API serving recorded-shape answers."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins import influxdb
from unity.collectors.plugins.influxdb import InfluxdbPlugin
from unity.sdk import ConfigError
from unity.sdk.testing import run

TESTDATA = Path(__file__).parent / "testdata" / "influxdb"
TOKEN = "Xx9bq4-Gk2vC0lL1mM3nN5pP7rR9tT1vV3xX5zZ7bB9dD1fF3hH5jJ7lL9nN1pP3rR5tT7vV9xX1zZ3b=="
BUCKETS = [
    b
    for page in ("buckets-v2.7.10-page1.json", "buckets-v2.7.10-page2.json")
    for b in json.loads((TESTDATA / page).read_text())["buckets"]
]


class Influx(BaseHTTPRequestHandler):
    server: Fake

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.server.requests.append((self.path, self.headers.get("Authorization", "")))
        if url.path == "/health":
            name = "health-v2.7.10-fail.json" if self.server.failing else "health-v2.7.10.json"
            self.reply(503 if self.server.failing else 200, (TESTDATA / name).read_bytes())
        elif url.path == "/ping":
            self.reply(204, b"", {"X-Influxdb-Version": "v2.7.10", "X-Influxdb-Build": "OSS"})
        elif url.path == "/api/v2/buckets":
            if self.headers.get("Authorization") != f"Token {TOKEN}":
                body = {"code": "unauthorized", "message": "unauthorized access"}
                self.reply(401, json.dumps(body).encode())
                return
            query = dict(urllib.parse.parse_qsl(url.query))
            limit, offset = int(query["limit"]), int(query["offset"])
            page = BUCKETS[offset : offset + limit]
            links = {"self": f"/api/v2/buckets?descending=false&limit={limit}&offset={offset}"}
            if offset + limit < len(BUCKETS):
                links["next"] = (
                    f"/api/v2/buckets?descending=false&limit={limit}&offset={offset + limit}"
                )
            self.reply(200, json.dumps({"links": links, "buckets": page}).encode())
        else:
            self.reply(404, b'{"code":"not found","message":"path not found"}')

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Fake(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Influx)
        self.requests: list[tuple[str, str]] = []
        self.failing = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def fake() -> Iterator[Fake]:
    server = Fake()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def plugin(**config: Any) -> InfluxdbPlugin:
    return InfluxdbPlugin(InfluxdbPlugin.parse_config(config))


def test_health_ping_buckets_over_every_page(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(influxdb, "PAGE", 2)
    monkeypatch.setenv("INFLUX_TOKEN", TOKEN)
    sink = collect(plugin(url=fake.url, token_env="INFLUX_TOKEN"))
    found = by_key(sink)
    assert found[key("influxdb_up")] == 1.0
    assert found[key("influxdb_ping_seconds")] > 0
    assert found[key("influxdb_buckets", type="system")] == 2
    assert found[key("influxdb_buckets", type="user")] == 2
    assert found[key("influxdb_bucket_retention_seconds", bucket="homelab")] == 0
    assert found[key("influxdb_bucket_retention_seconds", bucket="telegraf")] == 2592000
    [event] = sink.events
    assert event.data["version"] == "v2.7.10" and event.data["build"] == "OSS"
    assert event.data["buckets"] == ["_monitoring", "_tasks", "homelab", "telegraf"]
    pages = [path for path, _ in fake.requests if path.startswith("/api/v2/buckets")]
    assert pages == ["/api/v2/buckets?limit=2&offset=0", "/api/v2/buckets?limit=2&offset=2"]
    # The token travels in the Authorization header only, never in a URL.
    assert all(TOKEN not in path for path, _ in fake.requests)


async def test_failing_health_is_data_and_degraded(fake: Fake) -> None:
    fake.failing = True
    result = await run(plugin(url=fake.url))
    assert result.report.status == "degraded"
    assert result.report.message == "health fail: unable to reach bolt store: timeout"
    assert result.batch is not None
    assert {s.name: s.value for s in result.batch.samples}["influxdb_up"] == 0.0


async def test_a_refused_token_and_a_dead_server_are_errors(fake: Fake, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("wrong-token\n")
    result = await run(plugin(url=fake.url, token_file=str(secret)))
    assert result.report.status == "error"
    assert "/api/v2/buckets answered 401" in result.report.message
    assert "wrong-token" not in result.report.message
    fake.shutdown()
    fake.server_close()
    result = await run(plugin(url=fake.url))
    assert result.report.status == "error"
    assert "ConnectionRefusedError" in result.report.message


def test_config_and_unavailable(fake: Fake) -> None:
    with pytest.raises(ConfigError, match="no query or password"):
        InfluxdbPlugin.parse_config({"url": "http://h:8086/?token=abc"})
    assert plugin(url=fake.url).unavailable() is None
    fake.shutdown()
    fake.server_close()
    assert "nothing listens at 127.0.0.1" in (plugin(url=fake.url).unavailable() or "")
