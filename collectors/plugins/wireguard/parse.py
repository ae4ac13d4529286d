"""`wg show all dump` and `tailscale status --json`, parsed without the secrets they carry."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any


class ParseError(ValueError):
    """The text is not what the tool prints; the message names the line."""


@dataclass(frozen=True)
class Peer:
    interface: str
    public_key: str
    endpoint: str
    allowed_ips: tuple[str, ...]
    handshake_epoch: int  # Unix time of the latest handshake; 0: never
    rx_bytes: int
    tx_bytes: int
    keepalive: int  # seconds; 0: off


@dataclass(frozen=True)
class Interface:
    name: str
    public_key: str
    listen_port: int


def parse_dump(text: str) -> tuple[list[Interface], list[Peer]]:
    """Interface lines have 5 fields (with the private key, dropped here), peer lines 9."""
    interfaces: list[Interface] = []
    peers: list[Peer] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            if len(fields) == 5:
                interfaces.append(Interface(fields[0], fields[2], int(fields[3])))
            elif len(fields) == 9:
                iface, key, _psk, endpoint, ips, handshake, rx, tx, keepalive = fields
                peers.append(
                    Peer(
                        iface,
                        key,
                        "" if endpoint == "(none)" else endpoint,
                        tuple(ip for ip in ips.split(",") if ip and ip != "(none)"),
                        int(handshake),
                        int(rx),
                        int(tx),
                        0 if keepalive == "off" else int(keepalive),
                    )
                )
            else:
                raise ParseError(f"line {number} has {len(fields)} fields, expected 5 or 9")
        except ValueError as exc:
            if isinstance(exc, ParseError):
                raise
            # Never echo the line: an interface line holds the private key.
            raise ParseError(f"line {number}: a number field is not a number") from None
    return interfaces, peers


@dataclass(frozen=True)
class TailscalePeer:
    name: str
    dns_name: str
    os: str
    addresses: tuple[str, ...]
    online: bool
    rx_bytes: int
    tx_bytes: int
    last_handshake: dt.datetime | None


def parse_tailscale(text: str) -> tuple[str, list[TailscalePeer]]:
    """BackendState and the peers of ``tailscale status --json``."""
    try:
        doc: Any = json.loads(text)
    except ValueError as exc:
        raise ParseError(f"tailscale status is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ParseError("tailscale status is not a JSON object")
    peers = []
    for peer in (doc.get("Peer") or {}).values():
        handshake = str(peer.get("LastHandshake") or "")
        when = None
        if handshake and not handshake.startswith("0001-01-01"):  # Go's zero time: never
            when = dt.datetime.fromisoformat(handshake.replace("Z", "+00:00"))
        peers.append(
            TailscalePeer(
                str(peer.get("HostName", "")),
                str(peer.get("DNSName", "")).rstrip("."),
                str(peer.get("OS", "")),
                tuple(peer.get("TailscaleIPs") or ()),
                bool(peer.get("Online")),
                int(peer.get("RxBytes") or 0),
                int(peer.get("TxBytes") or 0),
                when,
            )
        )
    return str(doc.get("BackendState", "")), peers
