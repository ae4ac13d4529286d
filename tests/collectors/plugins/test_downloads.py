"""downloads: local fake qBittorrent (cookie sign-in), Transmission (409 session-id handshake)
and SABnzbd (numbers as strings, key in a POST body) serving recorded answers."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.appserver import Reply, Request, load, serve
from unity.collectors.appapi import AppError
from unity.collectors.plugins.downloads import Client, DownloadsConfig, DownloadsPlugin, number
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "downloads"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "apps"
PASSWORD = "adminadmin-not-really"
SID = "Xk3lq0Ne2bq7M1vF5pZcR8wYt6Hs9uJd"


def qbit_routes() -> dict[str, Any]:
    def login(request: Request) -> Reply:
        form = dict(urllib.parse.parse_qsl(request.body.decode()))
        if form != {"username": "admin", "password": PASSWORD}:
            return (200, b"Fails.", {"Content-Type": "text/plain"})
        headers = {"Content-Type": "text/plain", "Set-Cookie": f"SID={SID}; HttpOnly; path=/"}
        return (200, b"Ok.", headers)

    def authed(body: Any) -> Any:
        def route(request: Request) -> Reply:
            if request.headers.get("Cookie") != f"SID={SID}":
                return (403, b"Forbidden", {"Content-Type": "text/plain"})
            return (200, body, {"Content-Type": "text/plain"} if isinstance(body, bytes) else {})

        return route

    return {
        "POST /api/v2/auth/login": login,
        "/api/v2/transfer/info": authed(load(DATA / "qbittorrent-5.0.2-transfer-info.json")),
        "/api/v2/torrents/info": authed(load(DATA / "qbittorrent-5.0.2-torrents-info.json")),
        "/api/v2/app/version": authed(b"v5.0.2"),
    }


def plugin(*clients: Client) -> DownloadsPlugin:
    return DownloadsPlugin(DownloadsConfig(clients=list(clients)))


def test_qbittorrent_cookie_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBIT_PW", PASSWORD)
    with serve(qbit_routes()) as app:
        client = Client(name="qbit", url=app.url, username="admin", token_env="QBIT_PW")
        sink = collect(plugin(client))
    values = by_key(sink)
    labels = {"client": "qbit", "kind": "qbittorrent"}
    assert values[key("downloads_up", **labels)] == 1
    assert values[key("downloads_download_rate", **labels)] == 4718592
    assert values[key("downloads_upload_rate", **labels)] == 524288
    assert values[key("downloads_left_bytes", **labels)] == 2147483648 + 1233125376
    assert values[key("downloads_items", **labels, state="stoppedDL")] == 1
    assert values[key("downloads_items", **labels, state="missingFiles")] == 1
    assert sink.events[0].data["version"] == "v5.0.2"
    # The login went as a form body with the Referer qBittorrent's CSRF check wants.
    login = app.seen[0]
    assert login.method == "POST" and login.headers["Referer"] == app.url
    assert all(PASSWORD not in r.path for r in app.seen)


def test_qbittorrent_wrong_password_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBIT_PW", "wrong")
    with serve(qbit_routes()) as app:
        client = Client(name="qbit", url=app.url, username="admin", token_env="QBIT_PW")
        with pytest.raises(AppError, match="qbit: qBittorrent: sign-in refused"):
            collect(plugin(client))


def transmission_routes(user: str = "") -> dict[str, Any]:
    session = "Vv0dS7mUe1XJ7lpNqK3a9H2xZcB4fG6r"
    basic = "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    answers = {
        "session-stats": load(DATA / "transmission-4.0.6-session-stats.json"),
        "torrent-get": load(DATA / "transmission-4.0.6-torrent-get.json"),
        "session-get": load(DATA / "transmission-4.0.6-session-get.json"),
    }

    def rpc(request: Request) -> Reply:
        if user and request.headers.get("Authorization") != basic:
            return (401, b"<h1>401: Unauthorized</h1>", {"Content-Type": "text/html"})
        if request.headers.get("X-Transmission-Session-Id") != session:
            body = b"<h1>409: Conflict</h1><p>Your request had an invalid session-id header.</p>"
            return (409, body, {"X-Transmission-Session-Id": session, "Content-Type": "text/html"})
        return (200, answers[json.loads(request.body)["method"]])

    return {"POST /transmission/rpc": rpc}


def test_transmission_session_id_handshake() -> None:
    with serve(transmission_routes()) as app:
        sink = collect(plugin(Client(name="tr", kind="transmission", url=app.url)))
    values = by_key(sink)
    labels = {"client": "tr", "kind": "transmission"}
    assert values[key("downloads_download_rate", **labels)] == 2097152
    assert values[key("downloads_left_bytes", **labels)] == 1048576000 + 524288000
    assert values[key("downloads_items", **labels, state="downloading")] == 1
    assert values[key("downloads_items", **labels, state="seeding")] == 1
    assert values[key("downloads_items", **labels, state="stopped")] == 1
    assert values[key("downloads_items", **labels, state="error")] == 1
    # One 409, then every call carries the session id.
    assert len(app.seen) == 4
    assert sink.events[0].data["version"] == "4.0.6 (38c164933e)"


def test_transmission_basic_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TR_PW", PASSWORD)
    with serve(transmission_routes("transmission")) as app:
        client = Client(name="tr", kind="transmission", url=app.url, username="transmission",
                        token_env="TR_PW")  # fmt: skip
        values = by_key(collect(plugin(client)))
        assert values[key("downloads_up", client="tr", kind="transmission")] == 1
        monkeypatch.setenv("TR_PW", "wrong")
        with pytest.raises(AppError, match="session-stats answered 401: wrong or missing token"):
            collect(plugin(client))


def sab_routes(name: str, folder: Path = DATA) -> dict[str, Any]:
    def api(request: Request) -> Reply:
        form = dict(urllib.parse.parse_qsl(request.body.decode()))
        if form.get("apikey") != "0123456789abcdef0123456789abcdef":
            return (200, {"status": False, "error": "API Key Incorrect"})
        return (200, load(folder / name))

    return {"POST /api": api}


def sab(url: str) -> Client:
    return Client(name="sab", kind="sabnzbd", url=url, token_env="SAB_KEY")


def test_sabnzbd_numbers_as_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAB_KEY", "0123456789abcdef0123456789abcdef")
    with serve(sab_routes("sabnzbd-4.3.3-queue.json")) as app:
        values = by_key(collect(plugin(sab(app.url))))
    labels = {"client": "sab", "kind": "sabnzbd"}
    assert values[key("downloads_download_rate", **labels)] == 24576.0 * 1024
    assert values[key("downloads_left_bytes", **labels)] == 5632.5 * 1024 * 1024
    assert values[key("downloads_items", **labels, state="Queued")] == 1
    assert values[key("downloads_paused", **labels)] == 0
    assert key("downloads_upload_rate", **labels) not in values
    # The key travelled in the body: the URL is bare.
    assert app.paths() == ["/api"]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/fixtures is absent")
def test_sabnzbd_recorded_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAB_KEY", "0123456789abcdef0123456789abcdef")
    with serve(sab_routes("exportarr-sabnzbd-queue.json", SHARED)) as app:
        values = by_key(collect(plugin(sab(app.url))))
    labels = {"client": "sab", "kind": "sabnzbd"}
    assert values[key("downloads_download_rate", **labels)] == pytest.approx(0.35 * 1024)
    assert values[key("downloads_left_bytes", **labels)] == pytest.approx(3061.97 * 1024 * 1024)


def test_sabnzbd_wrong_key_and_one_client_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAB_KEY", "wrong")
    with serve({**sab_routes("sabnzbd-4.3.3-queue.json"), **transmission_routes()}) as app:
        p = plugin(sab(app.url), Client(name="tr", kind="transmission", url=app.url))
        values = by_key(collect(p))
        assert values[key("downloads_up", client="sab", kind="sabnzbd")] == 0
        health = p.health()
        assert health is not None and health.message == "sab: SABnzbd: API Key Incorrect"
        with pytest.raises(AppError, match="API Key Incorrect"):
            collect(plugin(sab(app.url)))


def test_number() -> None:
    assert number("357 ") == 357.0
    assert number(12) == 12.0
    with pytest.raises(AppError, match="not a number"):
        number("3.0 GB")


def test_config() -> None:
    assert DownloadsPlugin().unavailable() == "no clients configured"
    with pytest.raises(ConfigError, match="name and a url"):
        DownloadsPlugin.parse_config({"clients": [{"kind": "sabnzbd"}]})
