"""vaultwarden: a local fake Vaultwarden answering /alive with a clock and /api/config."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.appserver import Reply, Request, load, serve
from unity.collectors.appapi import AppError
from unity.collectors.plugins.vaultwarden import VaultwardenConfig, VaultwardenPlugin

DATA = Path(__file__).parent / "testdata" / "vaultwarden"


def routes(skew: float = 0.0) -> dict[str, Any]:
    def alive(request: Request) -> Reply:
        now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=skew)
        return (200, now.isoformat().replace("+00:00", "Z"))

    return {"/alive": alive, "/api/config": load(DATA / "vaultwarden-1.32.5-api-config.json")}


def test_alive_clock_and_version() -> None:
    with serve(routes()) as app:
        p = VaultwardenPlugin(VaultwardenConfig(url=app.url))
        assert p.unavailable() is None
        sink = collect(p)
    values = by_key(sink)
    assert values[key("vaultwarden_up")] == 1
    assert values[key("vaultwarden_response_seconds")] > 0
    assert abs(values[key("vaultwarden_clock_offset_seconds")]) < 30
    [event] = sink.events
    assert event.data["version"] == "1.32.5" and event.data["api_version"] == "2024.6.2"


def test_a_server_clock_ten_minutes_ahead() -> None:
    with serve(routes(skew=600)) as app:
        values = by_key(collect(VaultwardenPlugin(VaultwardenConfig(url=app.url))))
    assert values[key("vaultwarden_clock_offset_seconds")] == pytest.approx(600, abs=30)


def test_not_vaultwarden_and_not_there() -> None:
    with serve({"/alive": (200, b"<html>login</html>", {"Content-Type": "text/html"})}) as app:
        with pytest.raises(AppError, match="/alive did not answer JSON"):
            collect(VaultwardenPlugin(VaultwardenConfig(url=app.url)))
        url = app.url
    with pytest.raises(AppError, match="ConnectionRefused"):
        collect(VaultwardenPlugin(VaultwardenConfig(url=url)))
    assert VaultwardenPlugin().unavailable() == "no url configured"


def test_no_url_says_so() -> None:
    with pytest.raises(AppError, match=r"^Vaultwarden: no url configured$"):
        collect(VaultwardenPlugin())
