"""firewall over recorded nft, iptables-save and fail2ban-client outputs (fake tools on PATH)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.collectors import fake_tool
from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.firewall import FirewallPlugin
from unity.collectors.plugins.firewall.parse import parse_jail, parse_jails
from unity.sdk.testing import run

TESTDATA = Path(__file__).parent / "testdata" / "firewall"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "misc"


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared fixtures absent: {path}")
    return path


def fake_fail2ban(monkeypatch: pytest.MonkeyPatch, folder: Path, answers: dict[str, Path]) -> Path:
    """fail2ban-client answering `status` and `status <jail>` from files; logs each argv."""
    folder.mkdir(parents=True, exist_ok=True)
    calls = folder / "fail2ban-client.calls"
    script = folder / "fail2ban-client"
    table = {k: str(v) for k, v in answers.items()}
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"table = {table!r}\n"
        "key = ' '.join(sys.argv[1:])\n"
        "if key not in table:\n"
        "    sys.stderr.write('Sorry but the jail does not exist\\n'); sys.exit(255)\n"
        "sys.stdout.write(open(table[key]).read())\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return calls


def test_nftables_rule_counters_drops_and_named_counters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_tool.install(
        monkeypatch, tmp_path / "bin", "nft", TESTDATA / "nft-1.0.9-list-ruleset.json"
    )
    found = by_key(collect(FirewallPlugin()))
    base = {"backend": "nftables", "table": "inet filter"}
    web = {**base, "chain": "input", "rule": "web", "verdict": "accept"}
    assert found[key("firewall_rule_packets_total", **web)] == 90211
    assert found[key("firewall_rule_bytes", **web)] == 5412660
    unnamed = {**base, "chain": "input", "rule": "#4", "verdict": "accept"}
    assert found[key("firewall_rule_packets_total", **unnamed)] == 1843221
    # drop invalid (77) + log and drop the rest (3310); reject counts as a drop too.
    assert found[key("firewall_dropped_packets_total", **base, chain="input")] == 3387
    assert found[key("firewall_dropped_packets_total", **base, chain="forward")] == 12
    named = {**base, "counter": "ssh_attempts"}
    assert found[key("firewall_named_counter_packets_total", **named)] == 412
    rules = [k for k in found if k[0] == "firewall_rule_packets_total"]
    assert (
        len(rules) == 6
    )  # the rule without a counter and the one using the named counter are not rules with counts
    assert fake_tool.calls(calls) == [["-j", "list", "ruleset"]]


def test_iptables_save_counters_policies_and_duplicate_comments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tool.install(
        monkeypatch, tmp_path / "bin", "iptables-save", TESTDATA / "iptables-1.8.9-save-c.txt"
    )
    p = FirewallPlugin(FirewallPlugin.parse_config({"nftables": False, "iptables": True}))
    found = by_key(collect(p))
    base = {"backend": "iptables", "table": "filter", "chain": "INPUT"}
    assert found[key("firewall_rule_packets_total", **base, rule="web", verdict="accept")] == 19
    assert found[key("firewall_rule_packets_total", **base, rule="web (2)", verdict="accept")] == 4
    assert found[key("firewall_rule_packets_total", **base, rule="#8", verdict="reject")] == 9
    assert found[key("firewall_chain_policy_packets_total", **base, policy="DROP")] == 2214
    # policy DROP 2214 + drop invalid 77 + REJECT 9
    assert found[key("firewall_dropped_packets_total", **base)] == 2300
    f2b = {"backend": "iptables", "table": "filter", "chain": "f2b-sshd"}
    assert found[key("firewall_dropped_packets_total", **f2b)] == 6
    nat = {"backend": "iptables", "table": "nat", "chain": "POSTROUTING"}
    assert found[key("firewall_rule_packets_total", **nat, rule="#1", verdict="masquerade")] == 5521


def test_fail2ban_every_jail_and_banned_addresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overview = tmp_path / "status.txt"
    overview.write_text("Status\n|- Number of jail:\t1\n`- Jail list:\tsshd\n")
    calls = fake_fail2ban(
        monkeypatch,
        tmp_path / "bin",
        {"status": overview, "status sshd": TESTDATA / "fail2ban-1.0.2-status-sshd.txt"},
    )
    p = FirewallPlugin(FirewallPlugin.parse_config({"nftables": False, "fail2ban": True}))
    sink = collect(p)
    found = by_key(sink)
    assert found[key("fail2ban_banned", jail="sshd")] == 2
    assert found[key("fail2ban_failed", jail="sshd")] == 3
    assert found[key("fail2ban_bans_total", jail="sshd")] == 96
    assert found[key("fail2ban_failures_total", jail="sshd")] == 1287
    [event] = sink.events
    assert event.data == {"jails": {"sshd": ["203.0.113.66", "2001:db8::bad"]}}
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [
        ["status"],
        ["status", "sshd"],
    ]


def test_recorded_fail2ban_outputs() -> None:
    assert parse_jails(shared("netdata-fail2ban-status.txt").read_text()) == ["sshd", "dovecot"]
    counts = parse_jail(shared("netdata-fail2ban-jail-status.txt").read_text())
    assert counts == {
        "currently failed": 10,
        "total failed": 20,
        "currently banned": 30,
        "total banned": 40,
    }


async def test_one_tool_failing_is_degraded_all_failing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    denied = tmp_path / "denied.txt"
    denied.write_text("Operation not permitted (you must be root)\n")
    fake_tool.install(monkeypatch, tmp_path / "nft", "nft", denied, exit_code=1)
    overview = tmp_path / "status.txt"
    overview.write_text("Status\n|- Number of jail:\t1\n`- Jail list:\tsshd\n")
    fake_fail2ban(
        monkeypatch,
        tmp_path / "f2b",
        {"status": overview, "status sshd": TESTDATA / "fail2ban-1.0.2-status-sshd.txt"},
    )
    both = FirewallPlugin(FirewallPlugin.parse_config({"fail2ban": True}))
    result = await run(both)
    assert result.report.status == "degraded"
    assert result.report.message == "nft exited 1: Operation not permitted (you must be root)"
    result = await run(FirewallPlugin())
    assert result.report.status == "error"
    missing_jail = FirewallPlugin(
        FirewallPlugin.parse_config({"nftables": False, "fail2ban": True, "jails": ["nginx"]})
    )
    result = await run(missing_jail)
    assert result.report.status == "error"
    assert "does not exist" in result.report.message


def test_unavailable() -> None:
    off = FirewallPlugin(FirewallPlugin.parse_config({"nftables": False}))
    assert off.unavailable() == "none of nftables, iptables, fail2ban is enabled"
    gone = FirewallPlugin(FirewallPlugin.parse_config({"nft_command": ["/nonexistent/nft"]}))
    assert gone.unavailable() == "/nonexistent/nft not executable"
