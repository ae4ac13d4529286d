"""Find installed plugins through the ``unity.plugins`` entry-point group."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from unity.sdk.plugin import Plugin

__all__ = ["GROUP", "DiscoveryError", "discover", "load"]

GROUP = "unity.plugins"


class DiscoveryError(RuntimeError):
    """Two installed plugins claim one id, or a name does not lead to a Plugin."""


def discover() -> dict[str, type[Plugin]]:
    """Map plugin id to class for every installed plugin; duplicate ids are an error."""
    found: dict[str, type[Plugin]] = {}
    sources: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        source = f"{ep.value} ({ep.dist.name if ep.dist else 'unknown distribution'})"
        try:
            cls = ep.load()
        except (ImportError, AttributeError) as exc:
            raise DiscoveryError(f"entry point {source} cannot be loaded: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise DiscoveryError(f"entry point {source} is not a Plugin subclass")
        if cls.id in found and found[cls.id] is not cls:
            raise DiscoveryError(
                f"plugin id {cls.id!r} is claimed by {sources[cls.id]} and {source}"
            )
        found[cls.id] = cls
        sources[cls.id] = source
    return found


def load(target: str) -> type[Plugin]:
    """A plugin class by installed id (``cpu``) or import path (``package.module:Class``)."""
    if ":" not in target:
        available = discover()
        if target not in available:
            installed = ", ".join(sorted(available)) or "none"
            raise DiscoveryError(f"no installed plugin {target!r}; installed: {installed}")
        return available[target]
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise DiscoveryError(f"cannot import {target}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise DiscoveryError(f"{target} is not a Plugin subclass")
    return cls
