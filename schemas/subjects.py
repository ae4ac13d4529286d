"""Subject and stream names under one root (``unity``), so tests and tenants can be isolated."""

from __future__ import annotations

from dataclasses import dataclass

from unity.schemas.validate import token

__all__ = ["Subjects"]


@dataclass(frozen=True, slots=True)
class Subjects:
    """Names of every subject and stream under one root token."""

    root: str = "unity"

    def metrics(self, host: str, plugin: str) -> str:
        return f"{self.root}.metrics.{token(host)}.{token(plugin)}"

    def health(self, host: str, plugin: str) -> str:
        return f"{self.root}.health.{token(host)}.{token(plugin)}"

    def events(self, host: str, plugin: str) -> str:
        return f"{self.root}.events.{token(host)}.{token(plugin)}"

    def dlq(self, reason: str) -> str:
        return f"{self.root}.dlq.{token(reason)}"

    def alerts(self, rule: str) -> str:
        """State changes of one alert rule (stream ``<ROOT>_EVENTS``)."""
        return f"{self.root}.alerts.{token(rule)}"

    @property
    def metrics_stream(self) -> str:
        return f"{self.root.upper()}_METRICS"

    @property
    def events_stream(self) -> str:
        return f"{self.root.upper()}_EVENTS"

    @property
    def dlq_stream(self) -> str:
        return f"{self.root.upper()}_DLQ"

    @property
    def config_bucket(self) -> str:
        """JetStream KV bucket of plugin settings that collectors and SDK plugins watch.

        Key ``<host>.<plugin>.<instance or _>``; value JSON
        ``{"enabled": bool, "interval_s": float | null, "config": {...}, "revision": int}``.
        """
        return f"{self.root.upper()}_PLUGIN_CONFIG"
