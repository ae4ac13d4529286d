"""The alert evaluator on real servers, notifying real local receivers: a JSON webhook, an
ntfy-shaped server and an SMTP server (aiosmtpd), through Apprise."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from apprise.plugins.discord import NotifyDiscord

from tests.helpers import running_ingest, wait_for
from tests.integration.alerts_support import (
    add_channel,
    add_rules,
    execute,
    memory,
    publish,
    publish_event,
    receiver,
    rows,
    running_evaluator,
    smtp_server,
)
from tests.integration.ingest_support import streams_ready
from tests.servers import Env
from unity.schemas import Event, HealthReport, Sample, encode
from unity.schemas.alerts import DEFAULT_RULES, Rule

MEMORY = Rule(
    name="memory_high",
    expr="memory_used_percent",
    threshold=90.0,
    clear=80.0,
    severity="critical",
    message="{host}: memory at {value} (threshold {threshold})",
)


async def test_a_crossing_fires_and_resolves_on_webhook_ntfy_and_email(env: Env) -> None:
    nc, js = await streams_ready(env)
    await add_rules(env, MEMORY)
    async with receiver() as hook, receiver() as ntfy, smtp_server() as (smtp, mails):
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/unity")
        await add_channel(env, "phone", f"ntfy://127.0.0.1:{ntfy.port}/alerts")
        await add_channel(
            env, "mail", f"mailto://127.0.0.1:{smtp}?from=unity@example.com&to=ops@example.com"
        )
        async with running_evaluator(env):
            await publish(js, env, "nas", memory(50.0))
            await publish(js, env, "nas", memory(95.5))

            async def all_told() -> bool:
                return bool(hook.requests and ntfy.requests and mails)

            await wait_for(all_told, 30)
            body = hook.requests[0].json()
            assert body["title"] == "[CRITICAL] memory_high firing on nas"
            assert body["message"] == "nas: memory at 95.5% (threshold 90%)"
            assert body["type"] == "failure"
            assert "nas: memory at 95.5%" in ntfy.requests[0].text
            assert ntfy.requests[0].path.startswith("/alerts") or "alerts" in ntfy.requests[0].text
            assert "memory_high firing on nas" in str(mails[0]["Subject"])
            assert mails[0]["To"] == "ops@example.com"

            # Between clear and threshold: nothing; under clear: resolved, once on each.
            await publish(js, env, "nas", memory(85.0))
            await publish(js, env, "nas", memory(70.0))

            async def resolved() -> bool:
                return len(hook.requests) == 2 and len(ntfy.requests) == 2 and len(mails) == 2

            await wait_for(resolved, 30)
            assert hook.requests[1].json()["title"] == "[CRITICAL] memory_high resolved on nas"
            assert hook.requests[1].json()["type"] == "success"
    history = await rows(env, "SELECT state, suppressed FROM alert_history ORDER BY id")
    assert [(r["state"], r["suppressed"]) for r in history] == [
        ("firing", None),
        ("resolved", None),
    ]
    sent = await rows(env, "SELECT status, attempts FROM alert_deliveries")
    assert sorted((r["status"], r["attempts"]) for r in sent) == [("sent", 1)] * 6
    state = await rows(env, "SELECT state, fired_at, resolved_at FROM alerts")
    assert [r["state"] for r in state] == ["resolved"]
    assert state[0]["fired_at"] is not None and state[0]["resolved_at"] is not None
    await nc.close()


async def test_grouping_silences_maintenance_and_inhibition(env: Env) -> None:
    nc, js = await streams_ready(env)
    disk = Rule(name="disk_full", expr="disk_used_percent", threshold=90.0, message="{mount}")
    silent = Rule(name="silent", expr='{plugin="memory"}', kind="absence", by="host", for_s=1.0)
    await add_rules(env, disk, silent)
    await execute(
        env,
        "INSERT INTO alert_silences (matchers, ends_at, comment) VALUES"
        " ('{host=\"pi\"}', now() + interval '1 hour', 'moving it')",
    )
    await execute(
        env,
        "INSERT INTO alert_maintenance (matchers, starts_at, duration_s, recurrence) VALUES"
        " ('{host=\"nuc\"}', now() - interval '2 days 1 minute', 600, 'daily')",
    )
    async with receiver() as hook:
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/")
        async with running_evaluator(env):
            twenty = [
                Sample("disk_used_percent", 95.0, {"mount": f"/srv/d{i:02}"}, "percent")
                for i in range(20)
            ]
            await publish(js, env, "nas", twenty, plugin="disk")
            one = [Sample("disk_used_percent", 99.0, {"mount": "/"}, "percent")]
            await publish(js, env, "pi", one, plugin="disk")
            await publish(js, env, "nuc", one, plugin="disk")

            async def grouped() -> bool:
                return len(hook.requests) >= 1

            await wait_for(grouped, 30)
            # Host "old" goes silent; its disk alert then is inhibited.
            await publish(js, env, "old", memory(10.0))

            async def old_silent() -> bool:
                found = await rows(
                    env, "SELECT 1 FROM alerts WHERE rule = 'silent' AND state = 'firing'"
                )
                return bool(found)

            await wait_for(old_silent, 30)
            await publish(js, env, "old", one, plugin="disk")

            async def all_recorded() -> bool:
                n = await rows(
                    env, "SELECT count(*) AS n FROM alert_history WHERE rule = 'disk_full'"
                )
                return bool(n[0]["n"] == 23)

            await wait_for(all_recorded, 30)
            await asyncio.sleep(1.0)  # a second message would be out by now
    assert len(hook.requests) == 2, hook.texts()
    first = hook.requests[0].json()
    assert first["title"] == "[WARNING] disk_full: 20 alerts firing on nas"
    assert sorted(first["message"].splitlines()) == [f"/srv/d{i:02}" for i in range(20)]
    assert hook.requests[1].json()["title"] == "[WARNING] silent firing on old"
    quiet = await rows(
        env,
        "SELECT labels ->> 'host' AS host, suppressed FROM alert_history"
        " WHERE suppressed IS NOT NULL ORDER BY host",
    )
    reasons = {r["host"]: r["suppressed"] for r in quiet}
    assert reasons["pi"].startswith("silence ")
    assert reasons["nuc"].startswith("maintenance ")
    assert reasons["old"] == "inhibited by silent"
    await nc.close()


async def test_a_target_that_is_down_is_retried_then_recorded_failed(env: Env) -> None:
    nc, js = await streams_ready(env)
    await add_rules(env, MEMORY)
    async with receiver(status=500) as broken, receiver() as hook:
        await add_channel(env, "broken", f"json://127.0.0.1:{broken.port}/")
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/")
        async with running_evaluator(env, alerts_attempts=3, alerts_retry_s=0.2) as evaluator:
            await publish(js, env, "nas", memory(99.0))

            async def failed() -> bool:
                found = await rows(
                    env,
                    "SELECT d.status, d.attempts, d.error FROM alert_deliveries d"
                    " JOIN alert_channels c ON c.id = d.channel_id WHERE c.name = 'broken'",
                )
                return bool(found) and found[0]["status"] == "failed"

            await wait_for(failed, 30)
            # The evaluator keeps going: the next change still reaches the working channel.
            await publish(js, env, "nas", memory(10.0))

            async def resolved_sent() -> bool:
                return len(hook.requests) == 2

            await wait_for(resolved_sent, 30)
            assert evaluator.outbox.counts.failed >= 1
    outcome = await rows(
        env,
        "SELECT d.attempts, d.error FROM alert_deliveries d JOIN alert_channels c"
        " ON c.id = d.channel_id WHERE c.name = 'broken' ORDER BY d.id LIMIT 1",
    )
    assert outcome[0]["attempts"] == 3
    assert "500" in outcome[0]["error"] or "error" in outcome[0]["error"].lower()
    assert len(broken.requests) >= 3
    await nc.close()


async def test_two_evaluators_send_each_transition_once(env: Env) -> None:
    nc, js = await streams_ready(env)
    await add_rules(env, MEMORY)
    async with receiver() as hook:
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/")
        async with running_evaluator(env, "a0"), running_evaluator(env, "a1"):
            for host in ("nas", "pi", "nuc"):
                await publish(js, env, host, memory(97.0))

            async def fired() -> bool:
                return len(hook.requests) >= 3

            await wait_for(fired, 30)
            for host in ("nas", "pi", "nuc"):
                await publish(js, env, host, memory(1.0))

            async def resolved() -> bool:
                return len(hook.requests) >= 6

            await wait_for(resolved, 30)
            await asyncio.sleep(1.5)  # any duplicate would have arrived by now
    titles = sorted(r.json()["title"] for r in hook.requests)
    assert titles == sorted(
        f"[CRITICAL] memory_high {state} on {host}"
        for host in ("nas", "pi", "nuc")
        for state in ("firing", "resolved")
    )
    n = await rows(env, "SELECT count(*) AS n FROM alert_history")
    assert n[0]["n"] == 6
    await nc.close()


async def test_event_and_health_rules_and_the_evaluators_own_metrics(env: Env) -> None:
    nc, js = await streams_ready(env)
    ups = Rule(name="ups", expr='{kind="on_battery"}', kind="event", severity="critical")
    failing = Rule(name="failing", expr='{plugin="smart"}', kind="health", runs=2)
    await add_rules(env, ups, failing)
    async with receiver() as hook:
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/")
        async with running_evaluator(env) as evaluator:
            event = Event(
                host="nas",
                plugin="nut",
                kind="on_battery",
                message="UPS on battery",
                ts=time.time(),
            )
            await publish_event(js, env, event)

            async def told() -> bool:
                return len(hook.requests) == 1

            await wait_for(told, 30)
            assert hook.requests[0].json()["message"] == "nas: UPS on battery"
            for status in ("error", "error", "ok"):
                report = HealthReport(
                    host="nas", plugin="smart", status=status, message="smartctl: exit 2"
                )
                subject = env.settings.subjects.health("nas", "smart")
                await js.publish(subject, encode(report))

            async def health_told() -> bool:
                return len(hook.requests) == 3

            await wait_for(health_told, 30)
            titles = [r.json()["title"] for r in hook.requests[1:]]
            assert titles == [
                "[WARNING] failing firing on nas",
                "[WARNING] failing resolved on nas",
            ]
            assert (
                hook.requests[1].json()["message"] == "nas: plugin smart is error: smartctl: exit 2"
            )

            def all_counted() -> bool:
                # The receiver has a request before the sender records its answer.
                return evaluator.outbox.counts.sent == 3

            await wait_for(all_counted, 30)
            batch = evaluator.metrics()
            values = {(s.name, s.labels.get("state", "")): s.value for s in batch.samples}
            assert values[("alerts_rules", "")] == 2
            assert values[("alerts_active", "firing")] == 1
            assert values[("alerts_notifications_sent_total", "")] == 3
            assert batch.plugin == "unity-alerts"
    await nc.close()


async def test_the_default_pack_is_added_once_and_new_rules_apply_without_a_restart(
    env: Env,
) -> None:
    nc, js = await streams_ready(env)
    async with receiver() as hook:
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/")
        async with running_evaluator(env, alerts_default_rules=True) as evaluator:
            stored = await rows(env, "SELECT name FROM alert_rules WHERE source = 'default'")
            assert sorted(r["name"] for r in stored) == sorted(r.name for r in DEFAULT_RULES)
            assert len(evaluator.engine.rules) == len(DEFAULT_RULES)
            # A default switched off stays off; a new rule is picked up while running.
            await execute(
                env,
                "UPDATE alert_rules SET enabled = false,"
                " spec = jsonb_set(spec, '{enabled}', 'false'), updated_at = now()"
                " WHERE name = 'memory'",
            )
            await add_rules(env, msgspec.structs.replace(MEMORY, name="mem_now", for_s=0.0))

            async def reloaded() -> bool:
                rules = evaluator.engine.rules
                return "mem_now" in rules and "memory" not in rules

            await wait_for(reloaded, 30)
            await publish(js, env, "nas", memory(99.0))

            async def told() -> bool:
                return len(hook.requests) == 1

            await wait_for(told, 30)
            assert hook.requests[0].json()["title"] == "[CRITICAL] mem_now firing on nas"
        async with running_evaluator(env, alerts_default_rules=True) as again:
            assert "memory" not in again.engine.rules
    await nc.close()


async def test_reminders_stop_once_acknowledged_and_own_metrics_reach_the_stream(env: Env) -> None:
    nc, js = await streams_ready(env)
    await add_rules(env, msgspec.structs.replace(MEMORY, repeat_s=1.0))
    own = await js.subscribe(env.settings.subjects.metrics(env.settings.host, "unity-alerts"))
    async with receiver() as hook:
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/")
        async with running_evaluator(env, report_interval=0.5):
            await publish(js, env, "nas", memory(99.0))

            async def reminded() -> bool:
                return len(hook.requests) >= 2

            await wait_for(reminded, 30)
            await execute(env, "UPDATE alerts SET acked_at = now(), acked_by = 'me'")
            told = len(hook.requests)

            async def quiet_reminder() -> bool:
                found = await rows(
                    env, "SELECT 1 FROM alert_history WHERE suppressed = 'acknowledged'"
                )
                return bool(found)

            await wait_for(quiet_reminder, 30)
            # At most one reminder was already queued when the acknowledgement came.
            assert len(hook.requests) <= told + 1
    titles = {r.json()["title"] for r in hook.requests}
    assert titles == {"[CRITICAL] memory_high firing on nas"}
    reported = await own.next_msg(timeout=10)
    assert b"alerts_evaluations_total" in reported.data
    await nc.close()


async def test_a_discord_channel_posts_discords_webhook_body(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Apprise's Discord plugin only talks to discord.com: its base URL is pointed at a local
    Discord-shaped receiver, which answers 204 as Discord does."""
    nc, js = await streams_ready(env)
    await add_rules(env, MEMORY)
    async with receiver(status=204) as discord:
        monkeypatch.setattr(
            NotifyDiscord, "notify_url", f"http://127.0.0.1:{discord.port}/api/webhooks"
        )
        await add_channel(env, "discord", "discord://1234567890/hook-token-abc")
        async with running_evaluator(env):
            await publish(js, env, "nas", memory(96.0))

            async def posted() -> bool:
                return len(discord.requests) == 1

            await wait_for(posted, 30)
    request = discord.requests[0]
    assert request.path.startswith("/api/webhooks/1234567890/hook-token-abc")
    body = request.json()
    shown = str(body)
    assert "memory_high firing on nas" in shown and "nas: memory at 96%" in shown
    sent = await rows(env, "SELECT status FROM alert_deliveries")
    assert [r["status"] for r in sent] == ["sent"]
    await nc.close()


async def test_old_data_arriving_now_neither_resolves_an_absence_nor_fires(env: Env) -> None:
    nc, js = await streams_ready(env)
    silent = Rule(name="silent", expr='{plugin="memory"}', kind="absence", by="host", for_s=1.0)
    await add_rules(env, silent, MEMORY)
    async with receiver() as hook:
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/")
        async with running_evaluator(env):
            await publish(js, env, "nas", memory(10.0))

            async def fired() -> bool:
                return len(hook.requests) == 1

            await wait_for(fired, 30)
            # An hour-old batch (a spool draining, an import) arrives now, far over threshold.
            await publish(js, env, "nas", memory(99.0), ts=time.time() - 3600)
            # A change it caused would be out within this (the notification takes < 1 s).
            await asyncio.sleep(2.0)
            assert [r.json()["title"] for r in hook.requests] == ["[WARNING] silent firing on nas"]
            await publish(js, env, "nas", memory(10.0))

            async def resolved() -> bool:
                return len(hook.requests) == 2

            await wait_for(resolved, 30)
            assert hook.requests[1].json()["title"] == "[WARNING] silent resolved on nas"
    await nc.close()


async def test_a_started_evaluator_refills_its_windows_from_stored_samples(env: Env) -> None:
    nc, js = await streams_ready(env)
    rule = Rule(name="mem_avg", expr="avg(memory_used_percent[5m])", threshold=90.0)
    await add_rules(env, rule)
    now = time.time()
    async with running_ingest(env):
        for age in (60, 50, 40):
            await publish(js, env, "nas", memory(100.0), ts=now - age)

        async def stored() -> bool:
            n = await rows(env, "SELECT count(*) AS n FROM samples")
            return bool(n[0]["n"] == 3)

        await wait_for(stored, 30)
    async with receiver() as hook:
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/")
        async with running_evaluator(env):
            # Alone, 85 is under the threshold; with the stored minutes the average is 96.25.
            await publish(js, env, "nas", memory(85.0))

            async def fired() -> bool:
                return len(hook.requests) == 1

            await wait_for(fired, 30)
    value = await rows(env, "SELECT value FROM alerts WHERE rule = 'mem_avg'")
    assert value[0]["value"] == 96.25
    await nc.close()
