"""`unity alerts check FILE` and `unity alerts test CHANNEL` as the user runs them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.integration.alerts_support import add_channel, receiver, rows
from tests.integration.ingest_support import unity_env
from tests.servers import Env


def unity(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unity.compose", "alerts", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_check_names_the_bad_key_and_test_sends_and_records(env: Env, tmp_path: Path) -> None:
    child = unity_env(env, tmp_path, log_level="WARNING")
    good = tmp_path / "rules.toml"
    good.write_text('[[rule]]\nname = "hot"\nexpr = "avg(t[1m])"\nthreshold = 80\n')
    checked = await asyncio.to_thread(unity, child, "check", str(good))
    assert checked.returncode == 0 and "1 rule(s) valid" in checked.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "hot"\nexpr = "t"\nlevel = "x"\n')
    refused = await asyncio.to_thread(unity, child, "check", str(bad))
    assert refused.returncode == 1 and "level" in refused.stderr and "$.rule[0]" in refused.stderr

    # The evaluator will not run with a bad rule file: one line, the key named.
    child_bad = unity_env(env, tmp_path, log_level="WARNING", alerts_rule_files=str(bad))
    started = await asyncio.to_thread(unity, child_bad)
    assert started.returncode == 2 and "level" in started.stderr
    assert "Traceback" not in started.stderr

    async with receiver() as hook, receiver(status=503) as down:
        await add_channel(env, "hook", f"json://127.0.0.1:{hook.port}/secret-path-token")
        await add_channel(env, "down", f"json://127.0.0.1:{down.port}/secret-path-token")
        sent = await asyncio.to_thread(unity, child, "test", "hook")
        assert sent.returncode == 0, sent.stderr
        assert hook.requests[0].json()["title"] == "[Unity] test message"
        failed = await asyncio.to_thread(unity, child, "test", "down")
        assert failed.returncode == 1 and "failed" in failed.stderr
        assert "secret-path-token" not in failed.stderr
        missing = await asyncio.to_thread(unity, child, "test", "nope")
        assert missing.returncode == 1 and "no channel 'nope'" in missing.stderr
    outcomes = await rows(
        env,
        "SELECT c.name, d.status, d.error FROM alert_deliveries d"
        " JOIN alert_channels c ON c.id = d.channel_id ORDER BY c.name",
    )
    assert [(r["name"], r["status"]) for r in outcomes] == [("down", "failed"), ("hook", "sent")]
    assert outcomes[0]["error"] and "secret-path-token" not in outcomes[0]["error"]
