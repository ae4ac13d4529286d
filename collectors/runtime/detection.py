"""Which built-in plugins apply on this host: the collector runs those when no list is given.

A plugin says "not here" through ``Plugin.unavailable()`` (no ``nvidia-smi``, no sensors, no
Docker socket). Only built-ins are detected: an external plugin is run when it is listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from unity.sdk import Plugin

BUILTIN_PREFIX = "unity.collectors.plugins."


@dataclass(frozen=True, slots=True)
class Detection:
    """Plugin ids that apply here, and why each other installed plugin was left out."""

    applies: tuple[str, ...]
    left_out: dict[str, str]


def builtin(cls: type[Plugin]) -> bool:
    return cls.__module__.startswith(BUILTIN_PREFIX)


def why_not(cls: type[Plugin]) -> str | None:
    """Why a plugin with its default config cannot run here, or None when it can."""
    try:
        return cls().unavailable()
    except Exception as exc:  # a probe that fails says "not here", it never stops the collector
        return f"its check failed: {type(exc).__name__}: {exc}"


def detect(available: Mapping[str, type[Plugin]]) -> Detection:
    """Probe every installed plugin: built-ins that answer None apply, the rest are left out."""
    applies: list[str] = []
    left_out: dict[str, str] = {}
    for plugin_id, cls in sorted(available.items()):
        if not builtin(cls):
            left_out[plugin_id] = "external plugin: runs when listed in UNITY_COLLECT_PLUGINS"
        elif (reason := why_not(cls)) is not None:
            left_out[plugin_id] = reason
        else:
            applies.append(plugin_id)
    return Detection(tuple(applies), left_out)
