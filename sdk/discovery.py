"""Find installed plugins through the ``unity.plugins`` entry-point group."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points

from unity.sdk.plugin import Plugin

__all__ = ["GROUP", "DiscoveryError", "Installed", "discover", "load"]

GROUP = "unity.plugins"


class DiscoveryError(RuntimeError):
    """Two installed plugins claim one id, or a name does not lead to a Plugin."""


def discover() -> dict[str, type[Plugin]]:
    """Map plugin id to class for every installed plugin; duplicate ids are an error."""
    found: dict[str, type[Plugin]] = {}
    sources: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        source = _source(ep)
        cls = _load(ep)
        if cls.id in found and found[cls.id] is not cls:
            raise DiscoveryError(
                f"plugin id {cls.id!r} is claimed by {sources[cls.id]} and {source}"
            )
        found[cls.id] = cls
        sources[cls.id] = source
    return found


def _source(ep: EntryPoint) -> str:
    return f"{ep.value} ({ep.dist.name if ep.dist else 'unknown distribution'})"


def _load(ep: EntryPoint) -> type[Plugin]:
    try:
        cls = ep.load()
    except (ImportError, AttributeError) as exc:
        raise DiscoveryError(f"entry point {_source(ep)} cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise DiscoveryError(f"entry point {_source(ep)} is not a Plugin subclass")
    return cls


class Installed(Mapping[str, type[Plugin]]):
    """The installed plugins by id, each class imported when first asked for.

    A collector that names its plugins imports only theirs (every plugin module imported cost
    a collector about 4 MB of RSS). Entry points are named by plugin id; when the one named
    ``id`` is missing, ambiguous or leads to another id, and whenever the whole set is walked
    (detection, listing), it is :func:`discover`'s answer, duplicate check included.
    """

    def __init__(self) -> None:
        self._points = entry_points(group=GROUP)
        self._loaded: dict[str, type[Plugin]] = {}
        self._all: dict[str, type[Plugin]] | None = None

    def _everything(self) -> dict[str, type[Plugin]]:
        if self._all is None:
            self._all = discover()
        return self._all

    def __getitem__(self, plugin_id: str) -> type[Plugin]:
        if self._all is not None:
            return self._all[plugin_id]
        if plugin_id not in self._loaded:
            named = {_load(ep) for ep in self._points if ep.name == plugin_id}
            if len(named) != 1 or next(iter(named)).id != plugin_id:
                return self._everything()[plugin_id]
            self._loaded[plugin_id] = named.pop()
        return self._loaded[plugin_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._everything())

    def __len__(self) -> int:
        return len(self._everything())


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
