"""The alerts API on real servers: rules with validation, silences, maintenance, channels with
masked secrets, acknowledgement, history and deliveries as the evaluator leaves them."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from tests.api.conftest import Api
from tests.helpers import wait_for
from unity.schemas.alerts import AlertChange

RULE = {
    "name": "disk_full",
    "expr": 'max(disk_used_percent{mount="/"}[5m])',
    "threshold": 90,
    "clear": 85,
    "for_s": 60,
    "severity": "critical",
    "message": "{host}: {mount} at {value}",
}


async def test_rules_crud_and_a_bad_expression_names_its_position(api: Api) -> None:
    created = await api.send("POST", "/alerts/rules", json=RULE)
    assert created.status_code == 201, created.text
    assert created.json()["rule"]["threshold"] == 90
    again = await api.send("POST", "/alerts/rules", json=RULE)
    assert again.status_code == 409

    bad = await api.send(
        "POST", "/alerts/rules", json={**RULE, "name": "x", "expr": "avg(cpu{a=1}[5m])"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "bad_expression"
    assert "position 10" in bad.json()["error"]["message"]

    window = await api.send(
        "POST", "/alerts/rules", json={**RULE, "name": "y", "expr": "avg(cpu[5x])"}
    )
    assert window.status_code == 400 and "position 8" in window.json()["error"]["message"]

    hysteresis = await api.send("POST", "/alerts/rules", json={**RULE, "name": "z", "clear": 95})
    assert hysteresis.status_code == 400 and "clear" in hysteresis.json()["error"]["message"]

    unknown = await api.send("POST", "/alerts/rules", json={**RULE, "name": "w", "treshold": 1})
    assert unknown.status_code == 422 and "treshold" in unknown.json()["error"]["message"]

    replaced = await api.send("PUT", "/alerts/rules/disk_full", json={**RULE, "threshold": 95})
    assert replaced.status_code == 200
    got = await api.get("/alerts/rules/disk_full")
    assert got.json()["rule"]["threshold"] == 95 and got.json()["source"] == "api"
    names = [r["rule"]["name"] for r in (await api.get("/alerts/rules")).json()["items"]]
    assert names == ["disk_full"]

    off = await api.send("POST", "/alerts/rules/disk_full/disable")
    assert off.status_code == 200 and off.json()["rule"]["enabled"] is False
    assert (await api.get("/alerts/rules/disk_full")).json()["rule"]["enabled"] is False
    on = await api.send("POST", "/alerts/rules/disk_full/enable")
    assert on.json()["rule"]["enabled"] is True and on.json()["rule"]["threshold"] == 95
    assert (await api.send("POST", "/alerts/rules/nope/enable")).status_code == 404
    assert (await api.get("/alerts/rules", scope=None)).status_code == 401
    assert (await api.send("POST", "/alerts/rules", scope="read", json=RULE)).status_code == 403
    assert (await api.send("DELETE", "/alerts/rules/disk_full")).status_code == 204
    assert (await api.get("/alerts/rules/disk_full")).status_code == 404


async def test_silences_and_maintenance_windows(api: Api) -> None:
    bad = await api.send(
        "POST", "/alerts/silences", json={"matchers": '{host="nas"', "duration_s": 60}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_matchers"
    made = await api.send(
        "POST",
        "/alerts/silences",
        json={"matchers": '{host="nas"}', "duration_s": 3600, "comment": "disk swap"},
    )
    assert made.status_code == 201, made.text
    silence = made.json()
    assert silence["active"] is True and silence["created_by"].startswith("test-write-")
    assert (await api.send("DELETE", f"/alerts/silences/{silence['id']}")).status_code == 204
    listed = (await api.get("/alerts/silences")).json()["items"]
    assert [s["active"] for s in listed] == [False]

    start = datetime.now(UTC) - timedelta(days=3, minutes=5)
    window = await api.send(
        "POST",
        "/alerts/maintenance",
        json={
            "matchers": '{host="nas"}',
            "starts_at": start.isoformat(),
            "duration_s": 600,
            "recurrence": "daily",
        },
    )
    assert window.status_code == 201, window.text
    assert window.json()["active"] is True
    once = await api.send(
        "POST",
        "/alerts/maintenance",
        json={"matchers": '{host="nas"}', "starts_at": start.isoformat(), "duration_s": 600},
    )
    assert once.json()["active"] is False
    assert len((await api.get("/alerts/maintenance")).json()["items"]) == 2


async def test_channels_are_admin_only_and_never_show_their_secrets(api: Api) -> None:
    body = {
        "url": "ntfys://alice:s3cret-pass@ntfy.example.net/private-topic",
        "min_severity": "critical",
    }
    assert (await api.send("PUT", "/alerts/channels/phone", json=body)).status_code == 403
    made = await api.send("PUT", "/alerts/channels/phone", scope="admin", json=body)
    assert made.status_code == 201, made.text
    for answer in (
        made,
        await api.get("/alerts/channels", scope="admin"),
        await api.get("/alerts/channels/phone", scope="admin"),
    ):
        assert (
            "s3cret" not in answer.text
            and "private-topic" not in answer.text
            and "alice" not in answer.text
        )
        assert "ntfy.example.net" in answer.text
    queued = await api.send("POST", "/alerts/channels/phone/test", scope="admin")
    assert queued.status_code == 202
    change = queued.json()["change_id"]
    items = (await api.get(f"/alerts/deliveries?change_id={change}")).json()["items"]
    assert [(d["channel"], d["status"], d["rule"]) for d in items] == [("phone", "pending", "test")]
    assert (await api.send("DELETE", "/alerts/channels/phone", scope="admin")).status_code == 204
    assert (await api.get(f"/alerts/deliveries?change_id={change}")).json()["items"] == []


async def test_active_alerts_filters_and_ack(api: Api) -> None:
    pool = api.state.pool
    rule_id = await pool.fetchval(
        "INSERT INTO alert_rules (name, selector, condition) VALUES ('r1', 'x', '{}') RETURNING id"
    )
    for i, (state, host) in enumerate((("firing", "nas"), ("pending", "pi"), ("resolved", "nas"))):
        await pool.execute(
            "INSERT INTO alerts (rule_id, rule, fingerprint, episode, state, started_at, labels,"
            " severity) VALUES ($1, 'r1', $2, $3::bigint, $4,"
            " now() - make_interval(secs => $3::int), $5::jsonb, 'critical')",
            rule_id,
            f"fp{i}",
            i,
            state,
            f'{{"host": "{host}"}}',
        )
    active = (await api.get("/alerts")).json()["items"]
    assert sorted(a["state"] for a in active) == ["firing", "pending"]
    on_nas = (await api.get("/alerts?host=nas")).json()["items"]
    assert [a["fingerprint"] for a in on_nas] == ["fp0"]
    assert (await api.get("/alerts?state=bogus")).status_code == 400
    acked = await api.send("POST", f"/alerts/{on_nas[0]['id']}/ack")
    assert acked.status_code == 200 and acked.json()["acked_by"].startswith("test-write-")
    assert (await api.get("/alerts?acked=false")).json()["items"][0]["fingerprint"] == "fp1"
    resolved = (await api.get("/alerts?state=resolved")).json()["items"]
    assert (await api.send("POST", f"/alerts/{resolved[0]['id']}/ack")).status_code == 404


async def test_the_alert_paths_are_in_the_openapi_document(api: Api) -> None:
    paths = (await api.get("/openapi.json", scope=None)).json()["paths"]
    for path in (
        "/api/v1/alerts",
        "/api/v1/alerts/history",
        "/api/v1/alerts/{id}/ack",
        "/api/v1/alerts/rules",
        "/api/v1/alerts/rules/{name}",
        "/api/v1/alerts/silences/{id}",
        "/api/v1/alerts/maintenance/{id}",
        "/api/v1/alerts/channels/{name}/test",
        "/api/v1/alerts/deliveries",
        "/api/v1/alerts/stream",
    ):
        assert path in paths, path


async def test_alert_changes_reach_the_live_stream(api: Api) -> None:
    chunks: list[bytes] = []
    started = asyncio.Event()
    disconnect = asyncio.Event()
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            started.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/alerts/stream",
        "raw_path": b"/api/v1/alerts/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"unity"),
            (b"authorization", f"Bearer {api.tokens['read']}".encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("unity", 80),
    }
    task = asyncio.create_task(api.app(scope, receive, send))
    await asyncio.wait_for(started.wait(), 10)
    change = AlertChange(
        id="memory_high:fp:1:firing",
        rule="memory_high",
        fingerprint="fp",
        episode=1,
        state="firing",
        severity="critical",
        labels={"host": "nas"},
        value=95.0,
        unit="percent",
        message="nas: memory at 95%",
    )
    nc = api.state.nats
    await nc.publish(api.env.settings.subjects.alerts("memory_high"), msgspec.json.encode(change))

    def arrived() -> bool:
        return b"event: alert" in b"".join(chunks)

    await wait_for(arrived)
    block = b"".join(chunks).split(b"event: alert\ndata: ", 1)[1].split(b"\n\n", 1)[0]
    assert msgspec.json.decode(block, type=AlertChange) == change
    disconnect.set()
    await asyncio.wait_for(task, 10)
