"""Plugin metadata and per-plugin settings: what the registry lists and what the KV bucket holds."""

from __future__ import annotations

from typing import Any

import msgspec

from unity.schemas.validate import token
from unity.schemas.wire import Kind

__all__ = ["MetricInfo", "PluginInfo", "PluginSettings", "settings_key"]


class MetricInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A metric a plugin declares.

    Attributes:
        name: Metric name, e.g. ``ups_load_percent``.
        unit: Short unit (``percent``, ``bytes``, ``seconds``); empty for a plain number.
        kind: ``gauge`` or ``counter``.
        description: What the value means, one line.
    """

    name: str
    unit: str = ""
    kind: Kind = "gauge"
    description: str = ""


class PluginInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """Metadata of a plugin type: how it presents itself to the registry.

    Attributes:
        id: Unique plugin id, the ``<plugin>`` subject token (``[A-Za-z0-9_-]``).
        name: Human name.
        version: The plugin's own version.
        description: What it measures, one line.
        author: Who maintains it.
        category: A broad group (``system``, ``storage``, ``network``, ``apps``...).
        tags: Free keywords.
        metrics: The metrics it declares.
        config_schema: JSON Schema of its config.
        v: Wire version; absent means 1.
    """

    id: str
    name: str = ""
    version: str = ""
    description: str = ""
    author: str = ""
    category: str = ""
    tags: list[str] = []
    metrics: list[MetricInfo] = []
    config_schema: dict[str, Any] = {}
    v: int = 1


class PluginSettings(msgspec.Struct, frozen=True):
    """The value stored under ``<host>.<plugin>.<instance or _>`` in the plugin-config KV bucket.

    Encoded with every field, so ``nats kv get`` shows the whole state.

    Attributes:
        enabled: False stops the plugin's runs until it is enabled again.
        interval_s: Seconds between runs; None keeps the runner's own interval.
        config: The plugin's config, validated against its config schema by whoever applies it.
        revision: Increases with every change, so a watcher can ignore stale values.
    """

    enabled: bool = True
    interval_s: float | None = None
    config: dict[str, Any] = {}
    revision: int = 0


def settings_key(host: str, plugin: str, instance: str = "") -> str:
    """The KV key of one plugin instance on one host (``_`` for the default instance)."""
    return f"{token(host)}.{token(plugin)}.{token(instance)}"
