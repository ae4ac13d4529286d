"""WireGuard peers from `wg show all dump`, Tailscale peers from `tailscale status --json`."""

from __future__ import annotations

import time

import msgspec

from unity.collectors.command import CommandError, missing, run
from unity.collectors.plugins.wireguard.parse import ParseError, parse_dump, parse_tailscale
from unity.sdk import Health, Metric, Plugin, Sink

# WireGuard rekeys every 2 minutes while traffic flows and drops a session after 3.
RECENT_SECONDS = 180.0


class WireguardConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    wireguard: bool = True
    # argv prefix of `wg`; the plugin adds `show all dump` (needs CAP_NET_ADMIN: often sudo).
    wg_command: list[str] = msgspec.field(default_factory=lambda: ["wg"])
    tailscale: bool = False
    tailscale_command: list[str] = msgspec.field(default_factory=lambda: ["tailscale"])
    command_timeout: float = 5.0


class WireguardPlugin(Plugin):
    id = "wireguard"
    name = "WireGuard and Tailscale"
    description = "Per WireGuard peer: handshake age, traffic; Tailscale peers online."
    category = "network"
    Config = WireguardConfig
    metrics = (
        Metric("wireguard_peers", "", "gauge", "peers per interface"),
        Metric(
            "wireguard_peer_handshake_age_seconds",
            "seconds",
            "gauge",
            "since the latest handshake (absent: never)",
        ),
        Metric(
            "wireguard_peer_handshake_recent",
            "",
            "gauge",
            "1 when the latest handshake is under 180 s old",
        ),
        Metric("wireguard_peer_receive_bytes", "bytes", "counter", "received from the peer"),
        Metric("wireguard_peer_transmit_bytes", "bytes", "counter", "sent to the peer"),
        Metric("tailscale_up", "", "gauge", "1 when tailscaled's backend is Running"),
        Metric("tailscale_peers", "", "gauge", "peers in the tailnet view"),
        Metric("tailscale_peers_online", "", "gauge", "peers the coordination server sees online"),
        Metric("tailscale_peer_online", "", "gauge", "1 when the peer is online"),
        Metric(
            "tailscale_peer_handshake_age_seconds",
            "seconds",
            "gauge",
            "since the latest WireGuard handshake with the peer",
        ),
        Metric("tailscale_peer_receive_bytes", "bytes", "counter", "received from the peer"),
        Metric("tailscale_peer_transmit_bytes", "bytes", "counter", "sent to the peer"),
    )

    config: WireguardConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def unavailable(self) -> str | None:
        c = self.config
        wanted = [
            cmd
            for on, cmd in ((c.wireguard, c.wg_command), (c.tailscale, c.tailscale_command))
            if on
        ]
        if not wanted:
            return "neither wireguard nor tailscale is enabled"
        reasons = [missing(cmd) for cmd in wanted]
        return None if any(r is None for r in reasons) else "; ".join(r or "" for r in reasons)

    def collect(self, sink: Sink) -> None:
        c = self.config
        self._errors = []
        inventory: dict[str, object] = {}
        for on, read in ((c.wireguard, self.wireguard), (c.tailscale, self.tailscale)):
            if not on:
                continue
            try:
                inventory.update(read(sink))
            except (CommandError, ParseError) as exc:
                self._errors.append(str(exc))
        if self._errors and not inventory:
            raise RuntimeError("; ".join(self._errors))
        if inventory:
            sink.event("peers", "peer inventory", inventory)

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None

    def wireguard(self, sink: Sink) -> dict[str, object]:
        out = run(
            self.config.wg_command, ["show", "all", "dump"], timeout=self.config.command_timeout
        )
        interfaces, peers = parse_dump(out.stdout)
        now = time.time()
        counts = {i.name: 0 for i in interfaces}
        for peer in peers:
            counts[peer.interface] = counts.get(peer.interface, 0) + 1
            labels = {"interface": peer.interface, "peer": peer.public_key}
            # The dump gives the handshake as a Unix time, 0 for never: an age is now - epoch.
            if peer.handshake_epoch:
                age = max(0.0, now - peer.handshake_epoch)
                sink.add("wireguard_peer_handshake_age_seconds", age, labels)
                sink.add(
                    "wireguard_peer_handshake_recent", 1.0 if age < RECENT_SECONDS else 0.0, labels
                )
            else:
                sink.add("wireguard_peer_handshake_recent", 0.0, labels)
            sink.add("wireguard_peer_receive_bytes", peer.rx_bytes, labels)
            sink.add("wireguard_peer_transmit_bytes", peer.tx_bytes, labels)
        for name, count in counts.items():
            sink.add("wireguard_peers", count, {"interface": name})
        return {
            "wireguard": [
                {
                    "interface": p.interface,
                    "public_key": p.public_key,
                    "endpoint": p.endpoint,
                    "allowed_ips": list(p.allowed_ips),
                    "latest_handshake": p.handshake_epoch or None,
                    "persistent_keepalive": p.keepalive or None,
                }
                for p in peers
            ]
        }

    def tailscale(self, sink: Sink) -> dict[str, object]:
        out = run(
            self.config.tailscale_command, ["status", "--json"], timeout=self.config.command_timeout
        )
        state, peers = parse_tailscale(out.stdout)
        sink.add("tailscale_up", 1.0 if state == "Running" else 0.0)
        sink.add("tailscale_peers", len(peers))
        sink.add("tailscale_peers_online", sum(p.online for p in peers))
        now = time.time()
        for peer in peers:
            labels = {"peer": peer.dns_name or peer.name}
            sink.add("tailscale_peer_online", 1.0 if peer.online else 0.0, labels)
            if peer.last_handshake is not None:
                age = max(0.0, now - peer.last_handshake.timestamp())
                sink.add("tailscale_peer_handshake_age_seconds", age, labels)
            sink.add("tailscale_peer_receive_bytes", peer.rx_bytes, labels)
            sink.add("tailscale_peer_transmit_bytes", peer.tx_bytes, labels)
        return {
            "tailscale": {
                "backend_state": state,
                "peers": [
                    {
                        "name": p.dns_name or p.name,
                        "os": p.os,
                        "addresses": list(p.addresses),
                        "online": p.online,
                    }
                    for p in peers
                ],
            }
        }
