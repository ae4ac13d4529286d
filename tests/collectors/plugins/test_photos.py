"""photos: local fake Immich (admin and user keys) and PhotoPrism APIs serving recorded answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.appserver import Reply, Request, load, serve
from unity.collectors.appapi import AppError
from unity.collectors.plugins.photos import PhotosConfig, PhotosPlugin

DATA = Path(__file__).parent / "testdata" / "photos"
ADMIN, USER = "immich-admin-key-0123456789", "immich-user-key-9876543210"


def immich_routes() -> dict[str, Any]:
    def keyed(body: Any, admin_only: bool = False) -> Any:
        def route(request: Request) -> Reply:
            sent = request.headers.get("x-api-key")
            if sent not in (ADMIN, USER):
                return (
                    401,
                    {"message": "Invalid API key", "error": "Unauthorized", "statusCode": 401},
                )
            if admin_only and sent != ADMIN:
                return (
                    403,
                    {"message": "Forbidden resource", "error": "Forbidden", "statusCode": 403},
                )
            return (200, body)

        return route

    return {
        "/api/server/version": keyed(load(DATA / "immich-1.122.3-server-version.json")),
        "/api/server/statistics": keyed(load(DATA / "immich-1.122.3-server-statistics.json"), True),
        "/api/assets/statistics": keyed(load(DATA / "immich-1.122.3-assets-statistics.json")),
    }


def immich(url: str, monkeypatch: pytest.MonkeyPatch, secret: str) -> PhotosPlugin:
    monkeypatch.setenv("IMMICH_KEY", secret)
    return PhotosPlugin(PhotosConfig(url=url, token_env="IMMICH_KEY"))


def test_immich_admin_key_sees_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(immich_routes()) as app:
        sink = collect(immich(app.url, monkeypatch, ADMIN))
    values = by_key(sink)
    assert values[key("photos_up")] == 1
    assert values[key("photos_assets", type="photo")] == 48211
    assert values[key("photos_assets", type="video")] == 2113
    assert values[key("photos_usage_bytes")] == 412906713088
    assert sink.events[0].data == {"version": "1.122.3"}


def test_immich_user_key_falls_back_to_its_own_assets(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(immich_routes()) as app:
        values = by_key(collect(immich(app.url, monkeypatch, USER)))
    assert values[key("photos_assets", type="photo")] == 8200
    assert key("photos_usage_bytes") not in values


def test_immich_wrong_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        serve(immich_routes()) as app,
        pytest.raises(AppError, match="Immich: /api/server/version answered 401"),
    ):
        collect(immich(app.url, monkeypatch, "nope"))


def test_photoprism(tmp_path: Path) -> None:
    secret = tmp_path / "pp"
    secret.write_text("app-password-4f1c\n")

    def bearer(body: Any) -> Any:
        def route(request: Request) -> Reply:
            if request.headers.get("Authorization") != "Bearer app-password-4f1c":
                return (401, {"error": "Unauthorized"})
            return (200, body)

        return route

    routes = {
        "/api/v1/status": bearer(load(DATA / "photoprism-240915-status.json")),
        "/api/v1/config": bearer(load(DATA / "photoprism-240915-config.json")),
    }
    with serve(routes) as app:
        config = PhotosConfig(kind="photoprism", url=app.url, token_file=str(secret))
        sink = collect(PhotosPlugin(config))
    values = by_key(sink)
    assert values[key("photos_assets", type="photo")] == 28811
    assert values[key("photos_assets", type="live")] == 211
    assert values[key("photos_albums")] == 88
    assert sink.events[0].data == {"version": "240915-e1280b2fb"}
