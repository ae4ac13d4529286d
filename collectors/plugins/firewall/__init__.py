"""Firewall counters (nftables, iptables) and fail2ban bans."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from unity.collectors.command import CommandError, missing, run
from unity.collectors.plugins.firewall.parse import (
    DROPS,
    ParseError,
    Rule,
    banned_ips,
    parse_iptables,
    parse_jail,
    parse_jails,
    parse_nft,
)
from unity.sdk import Health, Metric, Plugin, Sink


class FirewallConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    nftables: bool = True
    # argv prefixes (reading the ruleset needs CAP_NET_ADMIN: ["sudo", "-n", "nft"]).
    nft_command: list[str] = msgspec.field(default_factory=lambda: ["nft"])
    iptables: bool = False
    iptables_command: list[str] = msgspec.field(default_factory=lambda: ["iptables-save"])
    fail2ban: bool = False
    fail2ban_command: list[str] = msgspec.field(default_factory=lambda: ["fail2ban-client"])
    # Jails to read; empty means every jail `fail2ban-client status` lists.
    jails: list[str] = []
    command_timeout: float = 5.0


class FirewallPlugin(Plugin):
    id = "firewall"
    name = "Firewall"
    description = "nftables/iptables rule and drop counters, fail2ban bans per jail."
    category = "network"
    Config = FirewallConfig
    metrics = (
        Metric("firewall_rule_packets_total", "", "counter", "packets a counted rule matched"),
        Metric("firewall_rule_bytes", "bytes", "counter", "bytes a counted rule matched"),
        Metric("firewall_named_counter_packets_total", "", "counter", "an nftables named counter"),
        Metric("firewall_named_counter_bytes", "bytes", "counter", "an nftables named counter"),
        Metric("firewall_chain_policy_packets_total", "", "counter", "left to the chain's policy"),
        Metric("firewall_dropped_packets_total", "", "counter", "dropped or rejected, per chain"),
        Metric("fail2ban_banned", "", "gauge", "addresses banned now"),
        Metric("fail2ban_failed", "", "gauge", "failures counted now"),
        Metric("fail2ban_bans_total", "", "counter", "bans since fail2ban started"),
        Metric("fail2ban_failures_total", "", "counter", "failures since fail2ban started"),
    )

    config: FirewallConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def sources(self) -> list[tuple[list[str], Callable[[Sink], None]]]:
        c = self.config
        return [
            (cmd, read)
            for on, cmd, read in (
                (c.nftables, c.nft_command, self.nft),
                (c.iptables, c.iptables_command, self.iptables),
                (c.fail2ban, c.fail2ban_command, self.fail2ban),
            )
            if on
        ]

    def unavailable(self) -> str | None:
        sources = self.sources()
        if not sources:
            return "none of nftables, iptables, fail2ban is enabled"
        reasons = [missing(cmd) for cmd, _ in sources]
        return None if any(r is None for r in reasons) else "; ".join(r or "" for r in reasons)

    def collect(self, sink: Sink) -> None:
        self._errors = []
        sources = self.sources()
        for _, read in sources:
            try:
                read(sink)
            except (CommandError, ParseError) as exc:
                self._errors.append(str(exc))
        if sources and len(self._errors) == len(sources):
            raise RuntimeError("; ".join(self._errors))

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None

    def run(self, command: list[str], args: list[str]) -> str:
        return run(command, args, timeout=self.config.command_timeout).stdout

    def nft(self, sink: Sink) -> None:
        rules, counters = parse_nft(self.run(self.config.nft_command, ["-j", "list", "ruleset"]))
        emit_rules(sink, "nftables", rules, {})
        for counter in counters:
            labels = {"backend": "nftables", "table": counter.table, "counter": counter.rule}
            sink.add("firewall_named_counter_packets_total", counter.packets, labels)
            sink.add("firewall_named_counter_bytes", counter.bytes, labels)

    def iptables(self, sink: Sink) -> None:
        rules, policies = parse_iptables(self.run(self.config.iptables_command, ["-c"]))
        dropped: dict[tuple[str, str], int] = {}
        for policy in policies:
            labels = {"backend": "iptables", "table": policy.table, "chain": policy.chain}
            sink.add(
                "firewall_chain_policy_packets_total",
                policy.packets,
                {**labels, "policy": policy.policy},
            )
            if policy.policy in DROPS:
                dropped[(policy.table, policy.chain)] = policy.packets
        emit_rules(sink, "iptables", rules, dropped)

    def fail2ban(self, sink: Sink) -> None:
        command = self.config.fail2ban_command
        jails = self.config.jails or parse_jails(self.run(command, ["status"]))
        inventory = {}
        for jail in jails:
            text = self.run(command, ["status", jail])
            counts = parse_jail(text)
            labels = {"jail": jail}
            sink.add("fail2ban_banned", counts["currently banned"], labels)
            for name, metric in (
                ("currently failed", "fail2ban_failed"),
                ("total banned", "fail2ban_bans_total"),
                ("total failed", "fail2ban_failures_total"),
            ):
                if name in counts:
                    sink.add(metric, counts[name], labels)
            inventory[jail] = banned_ips(text)
        sink.event(
            "fail2ban_banned",
            f"{sum(map(len, inventory.values()))} address(es) banned",
            {"jails": inventory},
        )


def emit_rules(
    sink: Sink, backend: str, rules: list[Rule], dropped: dict[tuple[str, str], int]
) -> None:
    seen: dict[tuple[str, str, str], int] = {}
    for rule in rules:
        # Two rules with one comment in a chain stay apart: the second gets "(2)".
        where = (rule.table, rule.chain, rule.rule)
        seen[where] = seen.get(where, 0) + 1
        name = rule.rule if seen[where] == 1 else f"{rule.rule} ({seen[where]})"
        labels = {
            "backend": backend,
            "table": rule.table,
            "chain": rule.chain,
            "rule": name,
            "verdict": rule.verdict.lower(),
        }
        sink.add("firewall_rule_packets_total", rule.packets, labels)
        sink.add("firewall_rule_bytes", rule.bytes, labels)
        if rule.verdict in DROPS:
            dropped[(rule.table, rule.chain)] = (
                dropped.get((rule.table, rule.chain), 0) + rule.packets
            )
        else:
            dropped.setdefault((rule.table, rule.chain), 0)
    for (table, chain), packets in dropped.items():
        sink.add(
            "firewall_dropped_packets_total",
            packets,
            {"backend": backend, "table": table, "chain": chain},
        )
