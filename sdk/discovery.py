"""Find installed plugins through the ``unity.plugins`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from sdk.plugin import Plugin

GROUP = "unity.plugins"


class DiscoveryError(RuntimeError):
    """Two installed plugins claim one id, or an entry point is not a Plugin."""


def discover() -> dict[str, type[Plugin]]:
    """Map plugin id to class for every installed plugin; duplicate ids are an error."""
    found: dict[str, type[Plugin]] = {}
    sources: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise DiscoveryError(f"entry point {ep.value} is not a Plugin subclass")
        source = f"{ep.value} ({ep.dist.name if ep.dist else 'unknown distribution'})"
        if cls.id in found and found[cls.id] is not cls:
            raise DiscoveryError(
                f"plugin id {cls.id!r} is claimed by {sources[cls.id]} and {source}"
            )
        found[cls.id] = cls
        sources[cls.id] = source
    return found
