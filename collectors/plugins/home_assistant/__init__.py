"""Home Assistant through its REST API and a long-lived access token."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec

from unity.collectors import appapi
from unity.sdk import Metric, Plugin, Sink

# States that mean the integration behind the entity does not answer.
DOWN = ("unavailable",)


class HomeAssistantConfig(appapi.AppConfig, frozen=True, forbid_unknown_fields=True):
    url: str = "http://127.0.0.1:8123"
    # Entities named in the `ha_unavailable` event (the counts have them all).
    list_limit: int = 100


class HomeAssistantPlugin(Plugin):
    id = "home_assistant"
    name = "Home Assistant"
    description = "Entities total, unavailable and unknown per domain, automations on, version."
    category = "apps"
    tags = ("home-assistant", "smart-home")
    Config = HomeAssistantConfig
    metrics = (
        Metric("ha_up", "", "gauge", "1 when the API answered"),
        Metric("ha_entities", "", "gauge", "entities per domain"),
        Metric("ha_entities_unavailable", "", "gauge", "entities whose state is unavailable"),
        Metric("ha_entities_unknown", "", "gauge", "entities whose state is unknown"),
        Metric("ha_automations_on", "", "gauge", "automations switched on"),
    )

    config: HomeAssistantConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._version = ""
        self._down: list[str] | None = None

    def unavailable(self) -> str | None:
        return appapi.not_configured(self.config)

    def collect(self, sink: Sink) -> None:
        secret = appapi.token(self.config, "Home Assistant")
        client = appapi.Client("Home Assistant", self.config, {"Authorization": f"Bearer {secret}"})
        client.json("/api/")  # "API running.": the token is right before anything else
        config = client.json("/api/config")
        states = client.json("/api/states")
        if not isinstance(states, list) or not isinstance(config, dict):
            raise appapi.AppError("Home Assistant: /api/states or /api/config has a wrong shape")
        total: Counter[str] = Counter()
        down: Counter[str] = Counter()
        unknown: Counter[str] = Counter()
        down_ids: list[str] = []
        automations_on = 0
        for entity in states:
            entity_id = str(entity.get("entity_id", "")) if isinstance(entity, dict) else ""
            domain, dot, _ = entity_id.partition(".")
            if not dot:
                continue
            state = str(entity.get("state", ""))
            total[domain] += 1
            if state in DOWN:
                down[domain] += 1
                down_ids.append(entity_id)
            elif state == "unknown":
                unknown[domain] += 1
            if domain == "automation" and state == "on":
                automations_on += 1
        sink.add("ha_up", 1.0)
        for domain in sorted(total):
            labels = {"domain": domain}
            sink.add("ha_entities", total[domain], labels)
            sink.add("ha_entities_unavailable", down[domain], labels)
            sink.add("ha_entities_unknown", unknown[domain], labels)
        sink.add("ha_automations_on", automations_on)
        self._announce(sink, config, sorted(down_ids))

    def _announce(self, sink: Sink, config: dict[str, Any], down: list[str]) -> None:
        version = str(config.get("version", ""))
        if version != self._version:
            sink.event(
                "ha_version",
                f"Home Assistant {version}",
                {"version": version, "location_name": config.get("location_name"),
                 "time_zone": config.get("time_zone"), "state": config.get("state")},
            )  # fmt: skip
            self._version = version
        if down != self._down and (self._down is not None or down):
            limit = self.config.list_limit
            sink.event(
                "ha_unavailable",
                f"{len(down)} entities unavailable" + (f": {', '.join(down[:5])}" if down else ""),
                {"entities": down[:limit], "count": len(down), "was": (self._down or [])[:limit]},
                "warning" if down else "info",
            )
            self._down = down
