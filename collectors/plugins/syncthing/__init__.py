"""Syncthing through its REST API: devices connected, folder completion, bytes needed."""

from __future__ import annotations

from typing import Any

import msgspec

from unity.collectors import appapi
from unity.sdk import Metric, Plugin, Sink


class SyncthingConfig(appapi.AppConfig, frozen=True, forbid_unknown_fields=True):
    url: str = "http://127.0.0.1:8384"


def listing(client: appapi.Client, path: str) -> list[dict[str, Any]]:
    answer = client.json(path)
    if not isinstance(answer, list):
        raise appapi.AppError(f"Syncthing: {path} answered no list")
    return [item for item in answer if isinstance(item, dict)]


class SyncthingPlugin(Plugin):
    id = "syncthing"
    name = "Syncthing"
    description = "Syncthing devices connected, folder completion, bytes needed, errors."
    category = "apps"
    tags = ("syncthing", "sync")
    Config = SyncthingConfig
    metrics = (
        Metric("syncthing_devices", "", "gauge", "remote devices configured"),
        Metric("syncthing_devices_connected", "", "gauge", "remote devices connected now"),
        Metric("syncthing_device_connected", "", "gauge", "1 while the device is connected"),
        Metric(
            "syncthing_folder_completion_percent", "percent", "gauge", "remote devices' completion"
        ),
        Metric("syncthing_folder_need_bytes", "bytes", "gauge", "this device still needs"),
        Metric("syncthing_folder_errors", "", "gauge", "items that failed to sync"),
        Metric("syncthing_folder_paused", "", "gauge", "1 while the folder is paused"),
    )

    config: SyncthingConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._states: dict[str, str] = {}

    def unavailable(self) -> str | None:
        return appapi.not_configured(self.config)

    def collect(self, sink: Sink) -> None:
        client = appapi.Client(
            "Syncthing", self.config, {"X-API-Key": appapi.token(self.config, "Syncthing")}
        )
        status = client.json("/rest/system/status")
        my_id = str(status.get("myID", "")) if isinstance(status, dict) else ""
        devices = [d for d in listing(client, "/rest/config/devices") if d.get("deviceID") != my_id]
        connections = (client.json("/rest/system/connections") or {}).get("connections") or {}
        connected = 0
        for device in devices:
            link = connections.get(device.get("deviceID")) or {}
            up = bool(link.get("connected")) and not link.get("paused")
            connected += up
            sink.add(
                "syncthing_device_connected",
                float(up),
                {"device": str(device.get("name") or device.get("deviceID"))},
            )
        sink.add("syncthing_devices", len(devices))
        sink.add("syncthing_devices_connected", connected)
        states: dict[str, str] = {}
        for folder in listing(client, "/rest/config/folders"):
            ident = str(folder.get("id", ""))
            labels = {"folder": str(folder.get("label") or ident)}
            sink.add("syncthing_folder_paused", float(bool(folder.get("paused"))), labels)
            if folder.get("paused"):
                continue
            db: dict[str, Any] = client.json("/rest/db/status", query={"folder": ident})
            completion = client.json("/rest/db/completion", query={"folder": ident})
            sink.add(
                "syncthing_folder_completion_percent",
                float(completion.get("completion", 0)),
                labels,
            )
            sink.add("syncthing_folder_need_bytes", float(db.get("needBytes", 0)), labels)
            sink.add(
                "syncthing_folder_errors",
                float(db.get("errors", 0) or db.get("pullErrors", 0)),
                labels,
            )
            states[labels["folder"]] = str(db.get("state", ""))
        bad = sorted(f for f, state in states.items() if state == "error")
        before = sorted(f for f, state in self._states.items() if state == "error")
        if bad != before:
            sink.event(
                "syncthing_folders_error",
                f"{len(bad)} folder(s) in error" + (f": {', '.join(bad)}" if bad else ""),
                {"states": states, "was": before},
                "warning" if bad else "info",
            )
        self._states = states
