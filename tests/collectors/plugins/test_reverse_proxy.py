"""reverse_proxy: local fake Traefik (paginated, basic auth), Caddy admin and Nginx Proxy Manager
APIs serving recorded answers; Traefik's recorded /metrics from the shared fixtures."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.appserver import Reply, Request, load, serve
from unity.collectors.appapi import AppError
from unity.collectors.plugins.reverse_proxy import (
    Proxy,
    ReverseProxyConfig,
    ReverseProxyPlugin,
    npm_time,
    prometheus,
)
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "reverse_proxy"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "apps"
PASSWORD = "s3cret-dashboard"


def paged(items: list[Any], user: str = "") -> Any:
    def route(request: Request) -> Reply:
        if user:
            pair = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
            if request.headers.get("Authorization") != f"Basic {pair}":
                return (401, b"401 Unauthorized\n", {"Content-Type": "text/plain"})
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))
        page, size = int(query.get("page", 1)), int(query.get("per_page", 100))
        chunk = items[(page - 1) * size : page * size]
        following = page + 1 if page * size < len(items) else 1  # Traefik: 1 on the last page
        return (200, chunk, {"X-Next-Page": str(following)})

    return route


def traefik_routes(user: str = "") -> dict[str, Any]:
    return {
        "/api/http/routers": paged(load(DATA / "traefik-3.2-http-routers.json"), user),
        "/api/http/services": paged(load(DATA / "traefik-3.2-http-services.json"), user),
    }


def test_traefik_every_page_with_basic_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAEFIK_PW", PASSWORD)
    with serve(traefik_routes("admin")) as app:
        proxy = Proxy(name="edge", url=app.url, username="admin", token_env="TRAEFIK_PW",
                      page_size=2)  # fmt: skip
        p = ReverseProxyPlugin(ReverseProxyConfig(proxies=[proxy]))
        sink = collect(p)
    values = by_key(sink)
    assert values[key("proxy_up", proxy="edge", kind="traefik")] == 1
    assert values[key("proxy_routers", proxy="edge", status="enabled")] == 4
    assert values[key("proxy_routers", proxy="edge", status="disabled")] == 1
    assert values[key("proxy_services", proxy="edge", status="warning")] == 1
    assert values[key("proxy_servers", proxy="edge", service="jellyfin@docker")] == 2
    assert values[key("proxy_servers_up", proxy="edge", service="jellyfin@docker")] == 1
    assert [p for p in app.paths() if p.startswith("/api/http/routers")] == [
        "/api/http/routers?page=1&per_page=2",
        "/api/http/routers?page=2&per_page=2",
        "/api/http/routers?page=3&per_page=2",
    ]
    [event] = sink.events
    assert event.data["problems"] == [
        'router grafana@docker: middleware "auth@file" does not exist',
        "service jellyfin@docker: http://172.18.0.8:8096 DOWN",
    ]


def test_traefik_wrong_password_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAEFIK_PW", "wrong")
    with serve(traefik_routes("admin")) as app:
        proxy = Proxy(name="edge", url=app.url, username="admin", token_env="TRAEFIK_PW")
        with pytest.raises(AppError, match="answered 401: wrong or missing token"):
            collect(ReverseProxyPlugin(ReverseProxyConfig(proxies=[proxy])))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/fixtures is absent")
def test_traefik_recorded_metrics() -> None:
    text = (SHARED / "netdata-traefik-v2.2.1-metrics.txt").read_text()
    with serve({**traefik_routes(), "/metrics": (200, text.encode())}) as app:
        proxy = Proxy(name="edge", url=app.url, metrics=True)
        values = by_key(collect(ReverseProxyPlugin(ReverseProxyConfig(proxies=[proxy]))))
    samples = prometheus(text)
    expected = sum(
        v for n, labels, v in samples
        if n == "traefik_entrypoint_requests_total" and labels["entrypoint"] == "web"
        and labels["code"] == "200"
    )  # fmt: skip
    assert expected > 0
    assert (
        values[key("proxy_requests_total", proxy="edge", entrypoint="web", code="200")] == expected
    )
    assert values[key("proxy_open_connections", proxy="edge", entrypoint="web")] == sum(
        v for n, labels, v in samples
        if n == "traefik_entrypoint_open_connections" and labels["entrypoint"] == "web"
    )  # fmt: skip


def test_caddy_routes_and_upstreams() -> None:
    routes = {
        "/config/": load(DATA / "caddy-2.8-config.json"),
        "/reverse_proxy/upstreams": load(DATA / "caddy-2.8-upstreams.json"),
    }
    with serve(routes) as app:
        proxy = Proxy(name="caddy", kind="caddy", url=app.url)
        sink = collect(ReverseProxyPlugin(ReverseProxyConfig(proxies=[proxy])))
    values = by_key(sink)
    assert values[key("proxy_routers", proxy="caddy", status="enabled")] == 4
    assert values[key("proxy_servers", proxy="caddy", service="reverse_proxy")] == 4
    assert values[key("proxy_servers_up", proxy="caddy", service="reverse_proxy")] == 3
    assert sink.events[0].data["problems"] == ["upstream 10.0.0.23:3000: 2 failure(s)"]


def npm_routes() -> dict[str, Any]:
    token = load(DATA / "npm-2.12-tokens.json")

    def login(request: Request) -> Reply:
        sent = json.loads(request.body)
        if sent != {"identity": "admin@home.example", "secret": PASSWORD}:
            return (401, {"error": {"code": 401, "message": "Invalid password"}})
        return (200, token)

    def authed(name: str) -> Any:
        def route(request: Request) -> Reply:
            if request.headers.get("Authorization") != f"Bearer {token['token']}":
                return (401, {"error": {"code": 401, "message": "Unauthorized"}})
            return (200, load(DATA / name))

        return route

    return {
        "POST /api/tokens": login,
        "/api/nginx/proxy-hosts": authed("npm-2.12-proxy-hosts.json"),
        "/api/nginx/certificates": authed("npm-2.12-certificates.json"),
    }


def test_nginx_proxy_manager_hosts_and_certificates(tmp_path: Path) -> None:
    secret = tmp_path / "npm.pass"
    secret.write_text(PASSWORD)
    with serve(npm_routes()) as app:
        proxy = Proxy(name="npm", kind="npm", url=app.url, username="admin@home.example",
                      token_file=str(secret))  # fmt: skip
        sink = collect(ReverseProxyPlugin(ReverseProxyConfig(proxies=[proxy])))
    values = by_key(sink)
    assert values[key("proxy_routers", proxy="npm", status="enabled")] == 2
    assert values[key("proxy_routers", proxy="npm", status="disabled")] == 1
    assert values[key("proxy_routers", proxy="npm", status="error")] == 1
    left = values[
        key("proxy_certificate_expiry_seconds", proxy="npm", certificate="*.home.example")
    ]
    assert left == pytest.approx(npm_time("2026-12-20 03:00:41") - time.time(), abs=60)  # type: ignore[operator]
    problems = sink.events[0].data["problems"]
    assert problems[0].startswith("host wiki.home.example: nginx: [emerg] host not found")
    assert problems[1] == "certificate old.home.example expired"
    # The password went in the POST body; no URL carried it.
    assert all(PASSWORD not in r.path for r in app.seen)


def test_npm_times_are_utc() -> None:
    assert npm_time("2026-12-20 03:00:41") == npm_time("2026-12-20T03:00:41Z")
    assert npm_time("") is None


def test_one_proxy_down_degrades_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(traefik_routes()) as app:
        good = Proxy(name="edge", url=app.url)
        bad = Proxy(name="gone", kind="caddy", url="http://127.0.0.1:9")
        p = ReverseProxyPlugin(ReverseProxyConfig(proxies=[good, bad]))
        values = by_key(collect(p))
    assert values[key("proxy_up", proxy="gone", kind="caddy")] == 0
    health = p.health()
    assert health is not None and "Caddy: http://127.0.0.1:9/config/" in health.message
    with pytest.raises(AppError, match="ConnectionRefused"):
        collect(ReverseProxyPlugin(ReverseProxyConfig(proxies=[bad])))


def test_config() -> None:
    assert ReverseProxyPlugin().unavailable() == "no proxies configured"
    with pytest.raises(ConfigError, match="needs username"):
        ReverseProxyPlugin.parse_config(
            {"proxies": [{"name": "n", "kind": "npm", "url": "http://npm:81"}]}
        )
    with pytest.raises(ConfigError, match=r"'proxies\[0\]\.token'"):
        ReverseProxyPlugin.parse_config(
            {"proxies": [{"name": "n", "url": "http://t", "token": "x"}]}
        )


def test_nothing_configured_is_an_empty_run() -> None:
    sink = collect(ReverseProxyPlugin())
    assert sink.samples == [] and sink.events == []
