"""nextcloud: a local fake Nextcloud serving the shared recorded serverinfo answers."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.appserver import Reply, Request, load, serve
from unity.collectors.appapi import AppError
from unity.collectors.plugins.nextcloud import INFO, NextcloudConfig, NextcloudPlugin

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "apps"
TOKEN = "serverinfo-Token-7dK2p9Lq"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/fixtures is absent")


def routes(name: str, basic: str = "") -> dict[str, Any]:
    def answer(request: Request) -> Reply:
        good = request.headers.get("NC-Token") == TOKEN or (
            basic and request.headers.get("Authorization") == f"Basic {basic}"
        )
        if request.headers.get("OCS-APIRequest") != "true" or not good:
            meta = {
                "status": "failure",
                "statuscode": 997,
                "message": "Current user is not logged in",
            }
            return (401, {"ocs": {"meta": meta}})
        return (200, load(SHARED / name))

    return {f"{INFO}?format=json&skipApps=false": answer}


def plugin(url: str, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> NextcloudPlugin:
    monkeypatch.setenv("NC_TOKEN", TOKEN)
    return NextcloudPlugin(NextcloudConfig(url=url, token_env="NC_TOKEN", **kw))


def test_serverinfo_nc22(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(routes("nextcloud-exporter-serverinfo-nc22.json")) as app:
        sink = collect(plugin(app.url, monkeypatch))
    values = by_key(sink)
    assert values[key("nextcloud_users")] == 3
    assert values[key("nextcloud_files")] == 412
    assert values[key("nextcloud_storages", type="home")] == 3
    assert values[key("nextcloud_shares", type="link")] == 7
    assert values[key("nextcloud_shares", type="federated_sent")] == 1
    assert values[key("nextcloud_active_users", window="5m")] == 3
    assert values[key("nextcloud_free_space_bytes")] == 12975042
    assert values[key("nextcloud_database_size_bytes")] == 30638080  # sent as a string
    assert values[key("nextcloud_apps_installed")] == 4
    assert values[key("nextcloud_app_updates")] == 0
    assert sink.events[0].data["version"] == "22.2.0.2"


def test_na_values_and_negative_free_space(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(routes("nextcloud-exporter-serverinfo-na-values.json")) as app:
        values = by_key(collect(plugin(app.url, monkeypatch)))
    assert values[key("nextcloud_files")] == 148948
    assert values[key("nextcloud_free_space_bytes")] == 7635480576
    with serve(routes("nextcloud-exporter-serverinfo-negative-space.json")) as app:
        values = by_key(collect(plugin(app.url, monkeypatch)))
    # -2 is PHP's "unknown", not a disk with negative space.
    assert key("nextcloud_free_space_bytes") not in values
    assert values[key("nextcloud_users")] == 4


def test_app_password_and_wrong_token(monkeypatch: pytest.MonkeyPatch) -> None:
    basic = base64.b64encode(f"admin:{TOKEN}".encode()).decode()
    with serve(routes("nextcloud-exporter-serverinfo-nc22.json", basic)) as app:
        values = by_key(collect(plugin(app.url, monkeypatch, username="admin")))
        assert values[key("nextcloud_users")] == 3
        assert app.seen[-1].headers["Authorization"] == f"Basic {basic}"
        monkeypatch.setenv("NC_TOKEN", "wrong")
        p = NextcloudPlugin(NextcloudConfig(url=app.url, token_env="NC_TOKEN"))
        with pytest.raises(AppError, match="answered 401: wrong or missing token"):
            collect(p)
