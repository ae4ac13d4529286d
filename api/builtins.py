"""The built-in plugins, known from the installed distribution's ``unity.plugins`` entry points
without importing them: the API imports no collector code."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

# Entry points of plugins shipped in this distribution point into this package.
BUILTIN_MODULES = "unity.collectors.plugins."


@functools.cache
def builtin_ids() -> frozenset[str]:
    """Ids of the built-in plugins."""
    return frozenset(
        ep.name
        for ep in entry_points(group="unity.plugins")
        if ep.value.startswith(BUILTIN_MODULES)
    )
