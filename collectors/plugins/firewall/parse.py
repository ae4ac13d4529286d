"""Readers of `nft -j list ruleset`, `iptables-save -c` and `fail2ban-client status`."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

DROPS = frozenset({"drop", "reject", "DROP", "REJECT"})


class ParseError(ValueError):
    """The tool printed something else; the message says what."""


@dataclass(frozen=True)
class Rule:
    table: str  # "inet filter" for nft (family and name), "filter" for iptables
    chain: str
    rule: str  # its comment, else its handle (nft) or position in the chain (iptables)
    verdict: str  # accept, drop, reject, jump..., or "" when the rule only counts
    packets: int
    bytes: int


@dataclass(frozen=True)
class Policy:
    table: str
    chain: str
    policy: str
    packets: int
    bytes: int


def parse_nft(text: str) -> tuple[list[Rule], list[Rule]]:
    """Counted rules and named counters (as rules of chain ``""``) of ``nft -j list ruleset``."""
    try:
        doc: Any = json.loads(text)
        items = doc["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ParseError(f"not nft JSON: {type(exc).__name__}: {exc}") from None
    rules: list[Rule] = []
    counters: list[Rule] = []
    for item in items:
        if "rule" in item:
            rule = item["rule"]
            counter = next((e["counter"] for e in rule.get("expr", []) if "counter" in e), None)
            if not isinstance(counter, dict):  # no counter, or a reference to a named one
                continue
            verdict = next(
                (
                    k
                    for e in rule["expr"]
                    for k in e
                    if k in ("accept", "drop", "reject", "jump", "goto", "return")
                ),
                "",
            )
            rules.append(
                Rule(
                    f"{rule['family']} {rule['table']}",
                    rule["chain"],
                    rule.get("comment") or f"#{rule['handle']}",
                    verdict,
                    int(counter["packets"]),
                    int(counter["bytes"]),
                )
            )
        elif "counter" in item:
            named = item["counter"]
            counters.append(
                Rule(
                    f"{named['family']} {named['table']}",
                    "",
                    named["name"],
                    "",
                    int(named["packets"]),
                    int(named["bytes"]),
                )
            )
    return rules, counters


COUNTS = re.compile(r"^\[(\d+):(\d+)\] (-A \S+ .*)$")
POLICY = re.compile(r"^:(\S+) (\S+) \[(\d+):(\d+)\]$")


def parse_iptables(text: str) -> tuple[list[Rule], list[Policy]]:
    """``iptables-save -c`` (or ``ip6tables-save -c``): per rule and chain policy counters."""
    rules: list[Rule] = []
    policies: list[Policy] = []
    table = ""
    position: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif match := POLICY.match(line):
            chain, policy, packets, size = match.groups()
            if policy != "-":  # user chains have no policy
                policies.append(Policy(table, chain, policy, int(packets), int(size)))
        elif match := COUNTS.match(line):
            packets, size, spec = match.groups()
            try:
                words = shlex.split(spec)
            except ValueError as exc:
                raise ParseError(f"cannot split rule {spec[:80]!r}: {exc}") from None
            chain = words[1]
            position[(table, chain)] = position.get((table, chain), 0) + 1
            comment = words[words.index("--comment") + 1] if "--comment" in words else ""
            target = words[words.index("-j") + 1] if "-j" in words else ""
            rules.append(
                Rule(
                    table,
                    chain,
                    comment or f"#{position[(table, chain)]}",
                    target,
                    int(packets),
                    int(size),
                )
            )
    if not table:
        raise ParseError("no *table line: not iptables-save output")
    return rules, policies


def parse_jails(text: str) -> list[str]:
    """The jail names of ``fail2ban-client status``."""
    for line in text.splitlines():
        if "Jail list:" in line:
            names = line.split(":", 1)[1]
            return [n.strip() for n in names.split(",") if n.strip()]
    raise ParseError("no 'Jail list:' in fail2ban-client status")


def parse_jail(text: str) -> dict[str, int]:
    """Counts of ``fail2ban-client status <jail>`` by their names, lower case."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.strip(" |`-").partition(":")
        if sep and value.strip().isdigit():
            counts[name.strip().lower()] = int(value.strip())
    if "currently banned" not in counts:
        raise ParseError("no 'Currently banned:' in fail2ban-client status <jail>")
    return counts


def banned_ips(text: str) -> list[str]:
    for line in text.splitlines():
        if "Banned IP list:" in line:
            return line.split(":", 1)[1].split()
    return []
