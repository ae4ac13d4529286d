"""home_assistant: a local fake HA (plain and TLS with a test CA) serving recorded answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.appserver import Reply, Request, bearer, load, serve
from tests.collectors.plugins.testca import TestCA
from unity.collectors.appapi import AppError
from unity.collectors.plugins.home_assistant import HomeAssistantConfig, HomeAssistantPlugin
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "home_assistant"
TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.long-lived.access-token"


def routes(states: object = None) -> dict[str, object]:
    return {
        "/api/": bearer(TOKEN, {"message": "API running."}),
        "/api/config": bearer(TOKEN, load(DATA / "config-2026.11.3.json")),
        "/api/states": bearer(TOKEN, states or load(DATA / "states-2026.11.3.json")),
    }


def plugin(url: str, tmp_path: Path, **kw: object) -> HomeAssistantPlugin:
    secret = tmp_path / "ha.token"
    secret.write_text(TOKEN + "\n")
    return HomeAssistantPlugin(HomeAssistantConfig(url=url, token_file=str(secret), **kw))  # type: ignore[arg-type]


def test_entities_per_domain_and_automations(tmp_path: Path) -> None:
    with serve(routes()) as app:
        p = plugin(app.url, tmp_path)
        assert p.unavailable() is None
        sink = collect(p)
    values = by_key(sink)
    assert values[key("ha_up")] == 1
    assert values[key("ha_entities", domain="light")] == 3
    assert values[key("ha_entities_unavailable", domain="light")] == 1
    assert values[key("ha_entities_unavailable", domain="switch")] == 1
    assert values[key("ha_entities_unavailable", domain="sensor")] == 1
    assert values[key("ha_entities_unknown", domain="sensor")] == 1
    assert values[key("ha_entities", domain="automation")] == 3
    assert values[key("ha_automations_on")] == 2
    assert sum(v for (n, _), v in values.items() if n == "ha_entities") == 16
    events = {e.kind: e for e in sink.events}
    assert events["ha_version"].data["version"] == "2026.11.3"
    assert events["ha_unavailable"].data["entities"] == [
        "light.hallway",
        "sensor.zigbee_bridge_link_quality",
        "switch.dishwasher_plug",
    ]
    # The token travelled in the header of every request, never in a path.
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in app.seen)
    assert all(TOKEN not in r.path for r in app.seen)


def test_unavailable_set_is_news_only_when_it_changes(tmp_path: Path) -> None:
    states = load(DATA / "states-2026.11.3.json")
    with serve(routes(states)) as app:
        p = plugin(app.url, tmp_path)
        collect(p)
        assert collect(p).events == []
        for entity in states:
            if entity["state"] == "unavailable":
                entity["state"] = "off"
        [event] = collect(p).events
    assert event.kind == "ha_unavailable"
    assert event.severity == "info"
    assert event.data["count"] == 0


def test_wrong_token_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HA_TOKEN", "stale-token")
    with serve(routes()) as app:
        p = HomeAssistantPlugin(HomeAssistantConfig(url=app.url, token_env="HA_TOKEN"))
        with pytest.raises(AppError, match="/api/ answered 401: wrong or missing token") as err:
            collect(p)
    assert "stale-token" not in str(err.value)


def test_tls_verified_with_a_ca_file(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    with serve(routes(), tls=ca.leaf("ha").server_context()) as app:
        assert app.url.startswith("https://")
        with pytest.raises(AppError, match="CERTIFICATE_VERIFY_FAILED"):
            collect(plugin(app.url, tmp_path))
        values = by_key(collect(plugin(app.url, tmp_path, ca_file=str(ca.pem))))
        assert values[key("ha_up")] == 1
        values = by_key(collect(plugin(app.url, tmp_path, verify_tls=False)))
        assert values[key("ha_up")] == 1


def test_unreachable_and_bad_shapes(tmp_path: Path) -> None:
    def broken(request: Request) -> Reply:
        return (200, b"<html>proxy error</html>", {"Content-Type": "text/html"})

    with serve({**routes(), "/api/states": broken}) as app:
        with pytest.raises(AppError, match="/api/states did not answer JSON"):
            collect(plugin(app.url, tmp_path))
        url = app.url
    with pytest.raises(AppError, match="ConnectionRefusedError"):
        collect(plugin(url, tmp_path))


def test_config() -> None:
    assert HomeAssistantPlugin().unavailable() == "no token configured (token_env or token_file)"
    with pytest.raises(ConfigError, match="credentials"):
        HomeAssistantPlugin.parse_config({"url": "http://admin:pw@ha.local:8123"})
    with pytest.raises(ConfigError, match="'token'"):
        HomeAssistantPlugin.parse_config({"token": "abc"})
