"""Nextcloud through the serverinfo app: users, files, storage, shares, updates."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from unity.collectors import appapi
from unity.sdk import Metric, Plugin, Sink

INFO = "/ocs/v2.php/apps/serverinfo/api/v1/info"


class NextcloudConfig(appapi.AppConfig, frozen=True, forbid_unknown_fields=True):
    url: str = "http://127.0.0.1"
    # Empty: the token is serverinfo's own (NC-Token header, `occ config:app:set serverinfo
    # token`); else an admin user whose app password is the token.
    username: str = ""


def count(value: Any) -> float | None:
    """serverinfo's numbers: ints, numeric strings ("30638080"), or "N/A" when unknown."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


class NextcloudPlugin(Plugin):
    id = "nextcloud"
    name = "Nextcloud"
    description = "Nextcloud serverinfo: users, active users, files, storage, shares, updates."
    category = "apps"
    tags = ("nextcloud",)
    Config = NextcloudConfig
    metrics = (
        Metric("nextcloud_users", "", "gauge", "user accounts"),
        Metric("nextcloud_active_users", "", "gauge", "users seen within the window"),
        Metric("nextcloud_files", "", "gauge", "files in the file cache"),
        Metric("nextcloud_storages", "", "gauge", "storages by type"),
        Metric("nextcloud_shares", "", "gauge", "shares by type"),
        Metric("nextcloud_free_space_bytes", "bytes", "gauge", "free space of the data folder"),
        Metric("nextcloud_database_size_bytes", "bytes", "gauge", "size of the database"),
        Metric("nextcloud_apps_installed", "", "gauge", "apps installed"),
        Metric("nextcloud_app_updates", "", "gauge", "app updates available"),
    )

    config: NextcloudConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._version = ""

    def unavailable(self) -> str | None:
        return appapi.not_configured(self.config)

    def read(self) -> dict[str, Any]:
        secret = appapi.token(self.config, "Nextcloud")
        headers = {"OCS-APIRequest": "true", "NC-Token": secret}
        if self.config.username:
            pair = base64.b64encode(f"{self.config.username}:{secret}".encode()).decode()
            headers = {"OCS-APIRequest": "true", "Authorization": f"Basic {pair}"}
        client = appapi.Client("Nextcloud", self.config, headers)
        answer = client.json(INFO, query={"format": "json", "skipApps": "false"})
        data = ((answer or {}).get("ocs") or {}).get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("nextcloud"), dict):
            raise appapi.AppError("Nextcloud: serverinfo answered without ocs.data.nextcloud")
        return data

    def collect(self, sink: Sink) -> None:
        data = self.read()
        nextcloud = data["nextcloud"]
        system = nextcloud.get("system") or {}
        storage = nextcloud.get("storage") or {}
        shares = nextcloud.get("shares") or {}
        apps = system.get("apps") or {}

        def add(metric: str, value: Any, labels: dict[str, str] | None = None) -> None:
            number = count(value)
            if number is not None:
                sink.add(metric, number, labels)

        add("nextcloud_users", storage.get("num_users"))
        add("nextcloud_files", storage.get("num_files"))
        for kind in ("local", "home", "other"):
            add("nextcloud_storages", storage.get(f"num_storages_{kind}"), {"type": kind})
        for kind in ("user", "groups", "link", "mail", "room"):
            add("nextcloud_shares", shares.get(f"num_shares_{kind}"), {"type": kind})
        add("nextcloud_shares", shares.get("num_fed_shares_sent"), {"type": "federated_sent"})
        for window, field in (("5m", "last5minutes"), ("1h", "last1hour"), ("24h", "last24hours")):
            add("nextcloud_active_users", (data.get("activeUsers") or {}).get(field),
                {"window": window})  # fmt: skip
        free = count(system.get("freespace"))
        if free is not None and free >= 0:  # negative: PHP could not tell (-2 = unknown)
            sink.add("nextcloud_free_space_bytes", free)
        add(
            "nextcloud_database_size_bytes",
            ((data.get("server") or {}).get("database") or {}).get("size"),
        )
        add("nextcloud_apps_installed", apps.get("num_installed"))
        add("nextcloud_app_updates", apps.get("num_updates_available"))
        version = str(system.get("version", ""))
        if version != self._version:
            self._version = version
            updates = apps.get("app_updates") or {}
            sink.event(
                "nextcloud_version",
                f"Nextcloud {version}",
                {"version": version, "app_updates": updates if isinstance(updates, dict) else {},
                 "webserver": (data.get("server") or {}).get("webserver"),
                 "php": ((data.get("server") or {}).get("php") or {}).get("version")},
            )  # fmt: skip
