"""OpenVPN servers from their status files: clients, traffic, connection time."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from unity.collectors.plugins.vpn.status import StatusError, parse
from unity.sdk import Health, Metric, Plugin, Sink


class StatusFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # The file named by the server's `status` directive (any --status-version).
    path: str
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem


class VpnConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status_files: list[StatusFile] = []


class VpnPlugin(Plugin):
    id = "vpn"
    name = "OpenVPN"
    description = "Per OpenVPN server: connected clients, their traffic and connection time."
    category = "network"
    Config = VpnConfig
    metrics = (
        Metric("openvpn_clients", "", "gauge", "connected clients"),
        Metric(
            "openvpn_status_age_seconds", "seconds", "gauge", "since the server rewrote the file"
        ),
        Metric("openvpn_client_receive_bytes", "bytes", "counter", "received from the client"),
        Metric("openvpn_client_transmit_bytes", "bytes", "counter", "sent to the client"),
        Metric(
            "openvpn_client_connected_seconds", "seconds", "gauge", "since the client connected"
        ),
    )

    config: VpnConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def unavailable(self) -> str | None:
        files = self.config.status_files
        if not files:
            return "no status_files configured"
        if not any(Path(f.path).is_file() for f in files):
            return f"no status file at {', '.join(f.path for f in files)}"
        return None

    def collect(self, sink: Sink) -> None:
        self._errors = []
        inventory = []
        for source in self.config.status_files:
            try:
                # One read, then parse: the server rewrites the file in place while we read.
                status = parse(Path(source.path).read_text(errors="replace"))
            except (OSError, StatusError, ValueError, KeyError) as exc:
                self._errors.append(f"{source.label}: {type(exc).__name__}: {exc}")
                continue
            now = time.time()
            server = {"server": source.label}
            sink.add("openvpn_clients", len(status.clients), server)
            if status.updated is not None:
                sink.add("openvpn_status_age_seconds", max(0.0, now - status.updated), server)
            for client in status.clients:
                labels = {**server, "client": client.common_name, "address": client.real_address}
                sink.add("openvpn_client_receive_bytes", client.received, labels)
                sink.add("openvpn_client_transmit_bytes", client.sent, labels)
                if client.connected_since is not None:
                    connected = max(0.0, now - client.connected_since)
                    sink.add("openvpn_client_connected_seconds", connected, labels)
                inventory.append(
                    {
                        "server": source.label,
                        "common_name": client.common_name,
                        "real_address": client.real_address,
                        "virtual_addresses": client.virtual_addresses,
                        "username": client.username,
                        "cipher": client.cipher,
                        "connected_since": client.connected_since,
                    }
                )
        if self._errors and len(self._errors) == len(self.config.status_files):
            raise RuntimeError("; ".join(self._errors))
        sink.event("clients", f"{len(inventory)} client(s) connected", {"clients": inventory})

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None
