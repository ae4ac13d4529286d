"""Vaultwarden: alive, how fast it answers, its clock, and its version. No token is needed: only
the public /alive and /api/config endpoints are read (the vault itself never is)."""

from __future__ import annotations

import datetime as dt
import time

import msgspec

from unity.collectors import appapi
from unity.sdk import Metric, Plugin, Sink


class VaultwardenConfig(appapi.AppConfig, frozen=True, forbid_unknown_fields=True):
    pass


class VaultwardenPlugin(Plugin):
    id = "vaultwarden"
    name = "Vaultwarden"
    description = "Vaultwarden alive, answer time, clock offset and version."
    category = "apps"
    tags = ("vaultwarden", "bitwarden", "passwords")
    Config = VaultwardenConfig
    metrics = (
        Metric("vaultwarden_up", "", "gauge", "1 when /alive answered"),
        Metric("vaultwarden_response_seconds", "seconds", "gauge", "time /alive took to answer"),
        Metric("vaultwarden_clock_offset_seconds", "seconds", "gauge", "server clock minus ours"),
    )

    config: VaultwardenConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._version = ""

    def unavailable(self) -> str | None:
        return appapi.not_configured(self.config, needs_token=False)

    def collect(self, sink: Sink) -> None:
        client = appapi.Client("Vaultwarden", self.config)
        started = time.monotonic()
        before = time.time()
        alive = client.json("/alive")
        took = time.monotonic() - started
        # /alive answers the server's time as a JSON string, with its zone ("...Z").
        try:
            server = dt.datetime.fromisoformat(str(alive).replace("Z", "+00:00"))
        except ValueError:
            raise appapi.AppError(f"Vaultwarden: /alive answered {str(alive)[:60]!r}") from None
        sink.add("vaultwarden_up", 1.0)
        sink.add("vaultwarden_response_seconds", took)
        if server.tzinfo is not None:
            sink.add("vaultwarden_clock_offset_seconds", server.timestamp() - (before + took / 2))
        config = client.json("/api/config")
        if not isinstance(config, dict):
            raise appapi.AppError("Vaultwarden: /api/config answered no object")
        version = str((config.get("server") or {}).get("version") or config.get("version") or "")
        if version != self._version:
            self._version = version
            sink.event(
                "vaultwarden_version",
                f"Vaultwarden {version}",
                {"version": version, "api_version": config.get("version"),
                 "git_hash": config.get("gitHash")},
            )  # fmt: skip
