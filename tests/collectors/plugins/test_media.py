"""media: local fake Plex (JSON only with the Accept header), Jellyfin and Emby servers serving
recorded answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.appserver import Reply, Request, load, serve
from unity.collectors.appapi import AppError
from unity.collectors.plugins.media import MediaConfig, MediaPlugin, Server

DATA = Path(__file__).parent / "testdata" / "media"
TOKEN = "xPlexTok3nAbCdEfGhIj"


def plex_routes() -> dict[str, Any]:
    def answer(name: str, size_zero: bool = False) -> Any:
        def route(request: Request) -> Reply:
            if request.headers.get("X-Plex-Token") != TOKEN:
                return (401, b"<html><head><title>Unauthorized</title></head></html>",
                        {"Content-Type": "text/html"})  # fmt: skip
            if request.headers.get("Accept") != "application/json":
                return (200, b'<?xml version="1.0"?><MediaContainer size="0"/>',
                        {"Content-Type": "text/xml"})  # fmt: skip
            if size_zero and request.headers.get("X-Plex-Container-Size") != "0":
                return (500, {"error": "the test wants only totals"})
            return (200, load(DATA / name))

        return route

    routes = {
        "/identity": answer("plex-1.41.2-identity.json"),
        "/status/sessions": answer("plex-1.41.2-status-sessions.json"),
        "/library/sections": answer("plex-1.41.2-library-sections.json"),
    }
    for n in ("1", "2", "3"):
        routes[f"/library/sections/{n}/all"] = answer(
            f"plex-1.41.2-section-{n}-all-size0.json", True
        )
    return routes


def test_plex_sessions_transcodes_and_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEX_TOKEN", TOKEN)
    with serve(plex_routes()) as app:
        server = Server(name="plex", kind="plex", url=app.url, token_env="PLEX_TOKEN")
        sink = collect(MediaPlugin(MediaConfig(servers=[server])))
    values = by_key(sink)
    labels = {"server": "plex", "kind": "plex"}
    assert values[key("media_up", **labels)] == 1
    assert values[key("media_sessions", **labels)] == 2
    assert values[key("media_transcodes", **labels)] == 1
    assert values[key("media_library_items", **labels, library="Movies")] == 1184
    assert values[key("media_library_items", **labels, library="Music")] == 412
    [event] = sink.events
    assert event.data["version"] == "1.41.2.9200-c6bbc1b53"
    assert event.data["sessions"][0] == {
        "user": "alice", "title": "Severance", "player": "Plex for Chromecast", "transcode": True
    }  # fmt: skip
    assert all(TOKEN not in r.path for r in app.seen)


def test_plex_wrong_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEX_TOKEN", "nope")
    with serve(plex_routes()) as app:
        server = Server(name="plex", kind="plex", url=app.url, token_env="PLEX_TOKEN")
        with pytest.raises(AppError, match="Plex: /identity answered 401: wrong or missing token"):
            collect(MediaPlugin(MediaConfig(servers=[server])))


def emby_like(prefix: str, version: str, header: str, value: str) -> dict[str, Any]:
    kind = "jellyfin" if prefix == "" else "emby"

    def answer(name: str) -> Any:
        def route(request: Request) -> Reply:
            if request.headers.get(header) != value:
                return (401, b"", {"Content-Type": "text/plain"})
            return (200, load(DATA / f"{kind}-{version}-{name}.json"))

        return route

    return {
        f"{prefix}/System/Info": answer("system-info"),
        f"{prefix}/Sessions?ActiveWithinSeconds=960": answer("sessions"),
        f"{prefix}/Items/Counts": answer("items-counts"),
    }


def test_jellyfin_and_emby(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("4f1c9e2b7a5d4c3e8f0a1b2c3d4e5f60")
    routes = {
        **emby_like(
            "", "10.10.3", "Authorization", 'MediaBrowser Token="4f1c9e2b7a5d4c3e8f0a1b2c3d4e5f60"'
        ),
        **emby_like("/emby", "4.8.10", "X-Emby-Token", "4f1c9e2b7a5d4c3e8f0a1b2c3d4e5f60"),
    }
    with serve(routes) as app:
        servers = [
            Server(name="jf", kind="jellyfin", url=app.url, token_file=str(secret)),
            Server(name="emby", kind="emby", url=app.url, token_file=str(secret)),
        ]
        sink = collect(MediaPlugin(MediaConfig(servers=servers)))
    values = by_key(sink)
    jf = {"server": "jf", "kind": "jellyfin"}
    assert values[key("media_sessions", **jf)] == 2  # the idle session plays nothing
    assert values[key("media_transcodes", **jf)] == 1
    assert values[key("media_library_items", **jf, library="episodes")] == 4211
    emby = {"server": "emby", "kind": "emby"}
    assert values[key("media_sessions", **emby)] == 1
    assert values[key("media_transcodes", **emby)] == 0
    assert values[key("media_library_items", **emby, library="movies")] == 310
    versions = {e.data["server"]: e.data["version"] for e in sink.events}
    assert versions == {"jf": "10.10.3", "emby": "4.8.10.0"}


def test_one_server_down_degrades(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEX_TOKEN", TOKEN)
    with serve(plex_routes()) as app:
        servers = [
            Server(name="plex", kind="plex", url=app.url, token_env="PLEX_TOKEN"),
            Server(name="jf", url=app.url, token_env="PLEX_TOKEN"),
        ]
        p = MediaPlugin(MediaConfig(servers=servers))
        values = by_key(collect(p))
    assert values[key("media_up", server="jf", kind="jellyfin")] == 0
    health = p.health()
    assert health is not None and "jf: Jellyfin: " in health.message and "404" in health.message
