"""syncthing: a local fake Syncthing REST API serving recorded answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.appserver import Reply, Request, load, serve
from unity.collectors.appapi import AppError
from unity.collectors.plugins.syncthing import SyncthingConfig, SyncthingPlugin

DATA = Path(__file__).parent / "testdata" / "syncthing"
KEY = "hT9bFq3kLp2xVn7mRz4cWs8dYg1jAe6u"


def routes(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    files = {
        "/rest/system/status": "system-status",
        "/rest/config/devices": "config-devices",
        "/rest/system/connections": "system-connections",
        "/rest/config/folders": "config-folders",
        "/rest/db/status?folder=xbhw4-ux9fj": "db-status-xbhw4-ux9fj",
        "/rest/db/status?folder=default": "db-status-default",
        "/rest/db/completion?folder=xbhw4-ux9fj": "db-completion-xbhw4-ux9fj",
        "/rest/db/completion?folder=default": "db-completion-default",
    }
    answers = {path: load(DATA / f"syncthing-1.29.2-{name}.json") for path, name in files.items()}
    answers.update(overrides or {})

    def route(body: Any) -> Any:
        def answer(request: Request) -> Reply:
            if request.headers.get("X-API-Key") != KEY:
                return (403, b"CSRF Error\n", {"Content-Type": "text/plain"})
            return (200, body)

        return answer

    return {path: route(body) for path, body in answers.items()}


def plugin(url: str, monkeypatch: pytest.MonkeyPatch, secret: str = KEY) -> SyncthingPlugin:
    monkeypatch.setenv("ST_KEY", secret)
    return SyncthingPlugin(SyncthingConfig(url=url, token_env="ST_KEY"))


def test_devices_and_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(routes()) as app:
        p = plugin(app.url, monkeypatch)
        assert p.unavailable() is None
        sink = collect(p)
    values = by_key(sink)
    assert values[key("syncthing_devices")] == 3  # this device is not a remote one
    assert values[key("syncthing_devices_connected")] == 2
    assert values[key("syncthing_device_connected", device="pi-offsite")] == 0
    assert values[key("syncthing_folder_completion_percent", folder="Photos")] == 97.4
    assert values[key("syncthing_folder_need_bytes", folder="Photos")] == 734003200
    assert values[key("syncthing_folder_errors", folder="Documents")] == 3
    assert values[key("syncthing_folder_paused", folder="Music")] == 1
    # A paused folder is not asked about.
    assert not any("old-mus1c" in path for path in app.paths())
    [event] = sink.events
    assert event.severity == "warning"
    assert event.message == "1 folder(s) in error: Documents"


def test_error_cleared_is_news_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = load(DATA / "syncthing-1.29.2-db-status-default.json") | {"state": "idle", "errors": 0}
    with serve(routes()) as app:
        p = plugin(app.url, monkeypatch)
        collect(p)
        assert collect(p).events == []
        app.routes.update(routes({"/rest/db/status?folder=default": fixed}))
        [event] = collect(p).events
        assert event.severity == "info" and event.data["was"] == ["Documents"]


def test_wrong_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        serve(routes()) as app,
        pytest.raises(AppError, match="answered 403: wrong or missing token"),
    ):
        collect(plugin(app.url, monkeypatch, "stale"))
