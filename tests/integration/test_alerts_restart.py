"""`unity alerts` as a real process, SIGKILLed while an alert is pending and while it is firing:
after a restart nothing is sent twice and no resolution is missed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.js.errors import NotFoundError

from tests.helpers import wait_for
from tests.integration.alerts_support import (
    Receiver,
    add_channel,
    add_rules,
    memory,
    publish,
    receiver,
    rows,
)
from tests.integration.ingest_support import Unity, streams_ready, unity_env
from tests.servers import Env
from unity.schemas.alerts import Rule

pytestmark = pytest.mark.slow

RULE = Rule(
    name="memory_high",
    expr="memory_used_percent",
    threshold=90.0,
    clear=80.0,
    for_s=3.0,
    message="{host}: memory at {value}",
)


def evaluator(env: Env, tmp_path: Path, n: int) -> Unity:
    child = unity_env(
        env,
        tmp_path,
        alerts_default_rules="false",
        alerts_group_wait_s="0.2",
        alerts_report_interval_s="0",
    )
    return Unity(child, tmp_path / f"alerts-{n}.log", "alerts", "--name", "a0")


async def state_is(env: Env, state: str) -> bool:
    found = await rows(env, "SELECT state FROM alerts WHERE rule = 'memory_high'")
    return [r["state"] for r in found] == [state]


def titles(hook: Receiver) -> list[str]:
    return [r.json()["title"] for r in hook.requests]


async def test_sigkill_while_pending_and_while_firing(env: Env, tmp_path: Path) -> None:
    nc, js = await streams_ready(env)
    await add_rules(env, RULE)
    async with receiver() as hook:
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/")
        first = evaluator(env, tmp_path, 1)

        async def consuming() -> bool:
            try:
                await js.consumer_info(env.settings.subjects.metrics_stream, "alerts-a0")
            except NotFoundError:
                return False
            return True

        await wait_for(consuming, 60, state=first.output)
        await publish(js, env, "nas", memory(95.0))

        async def pending() -> bool:
            return await state_is(env, "pending")

        await wait_for(pending, 30, state=first.output)
        first.kill()
        # The `for` runs out while nobody evaluates.
        await asyncio.sleep(RULE.for_s + 1)
        second = evaluator(env, tmp_path, 2)

        async def fired() -> bool:
            sent = await rows(env, "SELECT 1 FROM alert_deliveries WHERE status = 'sent'")
            return len(hook.requests) >= 1 and bool(sent)

        # Killed once the firing is told and recorded as sent: a kill between the webhook's
        # answer and that record sends it again (at least once on the last hop; see the
        # Alerts section of docs/architecture.md).
        await wait_for(fired, 60, state=second.output)
        assert await state_is(env, "firing")
        second.kill()
        # Resolved while no evaluator runs: the next one reads it from its durable consumer.
        await publish(js, env, "nas", memory(10.0))
        third = evaluator(env, tmp_path, 3)

        async def resolved() -> bool:
            return len(hook.requests) >= 2

        await wait_for(resolved, 60, state=third.output)
        await asyncio.sleep(2.0)  # a duplicate would have arrived by now
        assert third.terminate() == 0, third.output()
    assert titles(hook) == [
        "[WARNING] memory_high firing on nas",
        "[WARNING] memory_high resolved on nas",
    ]
    history = await rows(env, "SELECT state FROM alert_history ORDER BY ts, id")
    assert [r["state"] for r in history] == ["pending", "firing", "resolved"]
    assert await state_is(env, "resolved")
    await nc.close()
