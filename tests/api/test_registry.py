"""The plugin registry over HTTP, the config KV bucket, and plugins discovered from NATS alone."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from nats.js.errors import KeyNotFoundError

from tests.api.conftest import Api
from tests.helpers import running_ingest, wait_for
from unity.schemas import HealthReport, MetricBatch, Sample, encode, settings_key

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string"},
        "targets": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
            },
        },
    },
    "required": ["url"],
    "additionalProperties": False,
}


async def _register(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"host": "nas", "plugin": "toaster", "config_schema": SCHEMA, "config": {"url": "x"}}
    resp = await api.send("POST", "/plugins", json=body | fields)
    assert resp.status_code in (200, 201), resp.text
    data: dict[str, Any] = resp.json()
    return data


async def _kv(api: Api, host: str, plugin: str, instance: str = "") -> dict[str, Any]:
    kv = await api.js.key_value(api.env.settings.subjects.config_bucket)
    entry = await kv.get(settings_key(host, plugin, instance))
    assert entry.value is not None
    value: dict[str, Any] = msgspec.json.decode(entry.value)
    return value


async def test_register_two_instances_then_list_and_filter(api: Api) -> None:
    first = await _register(api, instance="rack", category="power", interval_s=30)
    second = await _register(api, instance="desk", category="power")
    await _register(api, host="pi", plugin="weather", config_schema={}, config={})
    assert first["id"] != second["id"]
    assert first["source"] == "registered" and first["external"] is True
    assert first["config_revision"] == 1

    listed = (await api.get("/plugins", params={"plugin": "toaster"})).json()
    assert [p["instance"] for p in listed["items"]] == ["desk", "rack"]
    assert listed["next_offset"] is None
    power = (await api.get("/plugins", params={"category": "power", "host": "nas"})).json()
    assert len(power["items"]) == 2
    page = (await api.get("/plugins", params={"limit": 2})).json()
    assert len(page["items"]) == 2 and page["next_offset"] == 2
    rest = (await api.get("/plugins", params={"limit": 2, "offset": 2})).json()
    assert len(rest["items"]) == 1 and rest["next_offset"] is None
    external = (await api.get("/plugins", params={"external": "true"})).json()
    assert len(external["items"]) == 3
    assert (await api.get("/plugins", params={"enabled": "maybe"})).status_code == 400

    # Both instances published their settings, under separate keys.
    assert await _kv(api, "nas", "toaster", "rack") == {
        "enabled": True,
        "interval_s": 30.0,
        "config": {"url": "x"},
        "revision": 1,
    }
    assert (await _kv(api, "nas", "toaster", "desk"))["interval_s"] is None


async def test_registering_again_updates_metadata_and_keeps_config(api: Api) -> None:
    first = await _register(api, version="1.0")
    await api.send("PUT", f"/plugins/{first['id']}/config", json={"config": {"url": "y"}})
    again = await api.send(
        "POST",
        "/plugins",
        json={"host": "nas", "plugin": "toaster", "version": "1.1", "config_schema": SCHEMA},
    )
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["version"] == "1.1"
    config = (await api.get(f"/plugins/{first['id']}/config")).json()
    assert config["config"] == {"url": "y"} and config["revision"] == 2


async def test_config_put_validates_against_the_schema_and_publishes(api: Api) -> None:
    plugin = await _register(api)
    bad = {"url": "u", "targets": [{"port": 80}, {"port": 70000}]}
    resp = await api.send("PUT", f"/plugins/{plugin['id']}/config", json={"config": bad})
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "config_invalid"
    assert "$.targets[1].port" in error["message"] and "70000" in error["message"]
    missing = await api.send("PUT", f"/plugins/{plugin['id']}/config", json={"config": {}})
    assert missing.status_code == 422 and "'url' is a required property" in missing.text
    assert (await _kv(api, "nas", "toaster"))["revision"] == 1  # nothing published

    good = {"url": "http://ups.local", "targets": [{"port": 3493}]}
    resp = await api.send("PUT", f"/plugins/{plugin['id']}/config", json={"config": good})
    assert resp.status_code == 200, resp.text
    assert resp.json()["revision"] == 2
    assert await _kv(api, "nas", "toaster") == {
        "enabled": True,
        "interval_s": None,
        "config": good,
        "revision": 2,
    }
    stale = await api.send(
        "PUT", f"/plugins/{plugin['id']}/config", json={"config": good, "revision": 1}
    )
    assert stale.status_code == 409
    stored = await api.state.pool.fetchval(
        "SELECT config_revision FROM plugins WHERE id = $1", plugin["id"]
    )
    assert stored == 2


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"host": "h", "plugin": "p"', 400, "malformed_body"),
        (b'{"host": "h"}', 422, "invalid_body"),
        (b'{"host": "h", "plugin": "p", "colour": 1}', 422, "invalid_body"),
        (b'{"host": "h", "plugin": "p", "config_schema": {"type": 5}}', 422, "bad_config_schema"),
        (b'{"host": "h", "plugin": "p", "interval_s": -1}', 422, "bad_interval"),
    ],
)
async def test_bad_registrations_are_refused(api: Api, body: bytes, status: int, code: str) -> None:
    resp = await api.send(
        "POST", "/plugins", content=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code


async def test_patch_enable_disable_and_interval_go_live(api: Api) -> None:
    plugin = await _register(api)
    url = f"/plugins/{plugin['id']}"
    resp = await api.send("PATCH", url, json={"interval_s": 5, "description": "the rack UPS"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["interval_s"] == 5 and resp.json()["config_revision"] == 2
    assert (await _kv(api, "nas", "toaster"))["interval_s"] == 5
    renamed = await api.send("PATCH", url, json={"name": "Rack UPS"})
    assert renamed.json()["config_revision"] == 2  # metadata only: nothing to publish

    off = await api.send("POST", f"{url}/disable")
    assert off.json()["enabled"] is False
    assert (await _kv(api, "nas", "toaster")) == {
        "enabled": False,
        "interval_s": 5.0,
        "config": {"url": "x"},
        "revision": 3,
    }
    assert (await api.send("POST", f"{url}/enable")).json()["enabled"] is True
    assert (await _kv(api, "nas", "toaster"))["enabled"] is True
    assert (await api.send("PATCH", url, json={"enabled": "yes"})).status_code == 422
    assert (await api.send("PATCH", "/plugins/424242", json={})).status_code == 404


async def test_delete_removes_the_entry_and_its_key(api: Api) -> None:
    plugin = await _register(api)
    assert (await api.send("DELETE", f"/plugins/{plugin['id']}", scope="admin")).status_code == 204
    assert (await api.get(f"/plugins/{plugin['id']}")).status_code == 404
    kv = await api.js.key_value(api.env.settings.subjects.config_bucket)
    with pytest.raises(KeyNotFoundError):
        await kv.get(settings_key("nas", "toaster", ""))


async def test_nats_only_plugin_is_discovered_with_health_and_runs(api: Api) -> None:
    subjects = api.env.settings.subjects
    batch = MetricBatch(
        host="edge-1", plugin="solar", instance="roof", ts=1_790_000_000.0, samples=[Sample("w", 1)]
    )
    await api.js.publish(subjects.metrics("edge-1", "solar"), encode(batch))
    for i, status in enumerate(("ok", "error", "ok")):
        report = HealthReport(
            host="edge-1",
            plugin="solar",
            instance="roof",
            status=status,  # type: ignore[arg-type]
            ts=1_790_000_000.0 + i,
            message=f"run {i}",
        )
        await api.js.publish(subjects.health("edge-1", "solar"), encode(report))
    async with running_ingest(api.env):

        async def discovered() -> bool:
            body = (await api.get("/plugins", params={"host": "edge-1"})).json()
            return bool(body["items"]) and body["items"][0]["health"] is not None

        await wait_for(discovered)
        entry = (await api.get("/plugins", params={"host": "edge-1"})).json()["items"][0]
        assert entry["source"] == "discovered" and entry["instance"] == "roof"
        assert entry["health"] == "ok" and entry["health_message"] == "run 2"

        async def all_runs() -> bool:
            body = (await api.get(f"/plugins/{entry['id']}/runs", params={"start": "0"})).json()
            return len(body["items"]) == 3

        await wait_for(all_runs)
        runs = (await api.get(f"/plugins/{entry['id']}/runs", params={"start": "0"})).json()
        assert [r["message"] for r in runs["items"]] == ["run 2", "run 1", "run 0"]
        assert runs["items"][1]["status"] == "error"
        health = (await api.get(f"/plugins/{entry['id']}/health")).json()
        assert health["status"] == "ok" and health["message"] == "run 2"
        hosts = (await api.get("/hosts")).json()["items"]
        edge = next(h for h in hosts if h["host"] == "edge-1")
        assert edge["plugins"] == ["solar"] and edge["series"] == 1 and edge["health"] == "ok"


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {"$ref": "#/$defs/missing"},
    ],
    ids=["self", "loop", "unresolvable"],
)
async def test_schemas_that_cannot_be_used_are_refused_at_register_and_patch(
    api: Api, schema: dict[str, Any]
) -> None:
    body = {"host": "nas", "plugin": "loop", "config_schema": schema}
    resp = await api.send("POST", "/plugins", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "bad_config_schema"
    assert (await api.get("/plugins", params={"plugin": "loop"})).json()["items"] == []
    plugin = await _register(api)
    patched = await api.send("PATCH", f"/plugins/{plugin['id']}", json={"config_schema": schema})
    assert patched.status_code == 422, patched.text
    assert patched.json()["error"]["code"] == "bad_config_schema"
    config = (await api.get(f"/plugins/{plugin['id']}/config")).json()
    assert config["config_schema"] == SCHEMA


async def test_a_loop_only_some_config_reaches_is_a_422_at_put(api: Api) -> None:
    # {} passes the registration probes; a config that has "a" walks the loop.
    schema = {"type": "object", "properties": {"a": {"$ref": "#/properties/a"}}}
    plugin = await _register(api, plugin="nested", config_schema=schema, config={})
    resp = await api.send("PUT", f"/plugins/{plugin['id']}/config", json={"config": {"a": 1}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "bad_config_schema"
    assert "$ref loop" in resp.json()["error"]["message"]


async def test_registering_without_config_must_satisfy_the_schema(api: Api) -> None:
    await _register(api, plugin="other")  # the bucket exists, so a missing key means unpublished
    resp = await api.send(
        "POST", "/plugins", json={"host": "nas", "plugin": "toaster", "config_schema": SCHEMA}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "config_invalid"
    assert "'url' is a required property" in resp.json()["error"]["message"]
    assert (await api.get("/plugins", params={"plugin": "toaster"})).json()["items"] == []
    kv = await api.js.key_value(api.env.settings.subjects.config_bucket)
    with pytest.raises(KeyNotFoundError):
        await kv.get(settings_key("nas", "toaster", ""))


async def test_a_schema_change_rechecks_the_stored_config(api: Api) -> None:
    plugin = await _register(api)  # config {"url": "x"}
    url = f"/plugins/{plugin['id']}"
    stricter = SCHEMA | {"required": ["url", "token"]}
    patched = await api.send("PATCH", url, json={"config_schema": stricter})
    assert patched.status_code == 422, patched.text
    error = patched.json()["error"]
    assert error["code"] == "config_invalid" and error["message"].startswith("the stored config")
    assert (await api.get(f"{url}/config")).json()["config_schema"] == SCHEMA

    looser = {"type": "object"}
    assert (await api.send("PATCH", url, json={"config_schema": looser})).status_code == 200
    assert (await api.get(f"{url}/config")).json()["config_schema"] == looser


async def test_registering_again_with_a_stricter_schema(api: Api) -> None:
    first = await _register(api)  # config {"url": "x"}, revision 1
    stricter = SCHEMA | {
        "properties": SCHEMA["properties"] | {"token": {"type": "string"}},
        "required": ["url", "token"],
    }
    base = {"host": "nas", "plugin": "toaster", "config_schema": stricter}
    # The stored config does not fit and the registration brings none: refused, nothing changes.
    refused = await api.send("POST", "/plugins", json=base)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "config_invalid"
    assert (await api.get(f"/plugins/{first['id']}/config")).json()["config_schema"] == SCHEMA
    # With a config that fits, it replaces the stored one and is published.
    fitting = {"url": "x", "token": "t"}
    again = await api.send("POST", "/plugins", json=base | {"config": fitting})
    assert again.status_code == 200, again.text
    assert again.json()["config_revision"] == 2
    assert await _kv(api, "nas", "toaster") == {
        "enabled": True,
        "interval_s": None,
        "config": fitting,
        "revision": 2,
    }
    # Registering once more keeps it: it fits.
    kept = await api.send("POST", "/plugins", json=base | {"config": {"url": "z", "token": "u"}})
    assert kept.json()["config_revision"] == 2
    assert (await api.get(f"/plugins/{first['id']}/config")).json()["config"] == fitting


async def test_list_filters_by_enabled_false_and_by_health(api: Api) -> None:
    on = await _register(api, instance="on")
    off = await _register(api, instance="off")
    assert (await api.send("POST", f"/plugins/{off['id']}/disable")).status_code == 200
    disabled = (await api.get("/plugins", params={"enabled": "false"})).json()["items"]
    assert [p["id"] for p in disabled] == [off["id"]]
    enabled = (await api.get("/plugins", params={"enabled": "true"})).json()["items"]
    assert [p["id"] for p in enabled] == [on["id"]]
    await api.state.pool.execute("UPDATE plugins SET health = 'error' WHERE id = $1", on["id"])
    failing = (await api.get("/plugins", params={"health": "error"})).json()["items"]
    assert [p["id"] for p in failing] == [on["id"]]
    assert (await api.get("/plugins", params={"health": "ok"})).json()["items"] == []


async def test_plugins_are_addressed_by_their_own_id_host_and_instance(api: Api) -> None:
    await _register(api, host="nas", instance="rack")
    await _register(api, host="nas", instance="desk")
    only = await _register(api, host="pi", plugin="weather", config_schema={}, config={})
    # One entry: its id is enough, as in `POST /plugins/cpu/disable`.
    resp = await api.send("POST", "/plugins/weather/disable")
    assert resp.status_code == 200, resp.text
    assert (resp.json()["id"], resp.json()["enabled"]) == (only["id"], False)
    assert (await _kv(api, "pi", "weather"))["enabled"] is False
    # Several: say which, or be told how.
    ambiguous = await api.get("/plugins/toaster")
    assert ambiguous.status_code == 409
    assert ambiguous.json()["error"]["code"] == "ambiguous_plugin"
    assert "nas/desk, nas/rack" in ambiguous.json()["error"]["message"]
    rack = await api.get("/plugins/toaster", params={"instance": "rack"})
    assert (rack.status_code, rack.json()["instance"]) == (200, "rack")
    config = await api.get("/plugins/toaster/config", params={"host": "nas", "instance": "desk"})
    assert config.json()["config"] == {"url": "x"}
    missing = await api.send("POST", "/plugins/cpu/disable")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no plugin 'cpu' in the registry"
    # The numeric key still works.
    assert (await api.get(f"/plugins/{only['id']}")).json()["plugin"] == "weather"


async def test_a_builtin_is_builtin_however_it_came_in(api: Api) -> None:
    announced = await _register(api, host="nas", plugin="cpu", config_schema={}, config={})
    assert (announced["source"], announced["external"]) == ("builtin", False)
    await api.state.pool.execute(
        "INSERT INTO plugins (host, plugin, source) VALUES ('pi', 'memory', 'discovered')"
    )
    seen = (await api.get("/plugins/memory")).json()
    assert (seen["source"], seen["external"]) == ("builtin", False)
    builtins = (await api.get("/plugins", params={"source": "builtin"})).json()["items"]
    assert {p["plugin"] for p in builtins} == {"cpu", "memory"}
    external = (await api.get("/plugins", params={"external": "true"})).json()["items"]
    assert external == []
    assert (await api.send("POST", "/plugins/cpu/disable")).json()["enabled"] is False


async def test_a_builtin_entry_has_its_plugins_real_config_schema(api: Api) -> None:
    await api.state.pool.execute(
        "INSERT INTO plugins (host, plugin, source) VALUES ('nas', 'cpu', 'discovered')"
    )
    config = (await api.get("/plugins/cpu/config")).json()
    assert config["config_schema"]["$ref"].endswith("CpuConfig")
    assert "percpu" in config["config_schema"]["$defs"]["CpuConfig"]["properties"]
    bad = await api.send("PUT", "/plugins/cpu/config", json={"config": {"percpu": "x"}})
    assert bad.status_code == 422, bad.text
    good = await api.send("PUT", "/plugins/cpu/config", json={"config": {"percpu": False}})
    assert good.status_code == 200, good.text
    assert (await _kv(api, "nas", "cpu"))["config"] == {"percpu": False}
