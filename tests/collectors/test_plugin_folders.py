"""Plugin folders and entry points agree: a folder under collectors/plugins/ is a built-in plugin
registered in pyproject.toml under its own name, and every built-in entry point has its folder."""

from __future__ import annotations

import tomllib
from pathlib import Path

from unity import collectors
from unity.collectors.runtime.detection import BUILTIN_PREFIX, builtin
from unity.sdk.discovery import GROUP, load

REPO = Path(__file__).resolve().parents[2]
PLUGINS = Path(collectors.__file__).parent / "plugins"


def folders() -> set[str]:
    return {p.name for p in PLUGINS.iterdir() if (p / "__init__.py").is_file()}


def entry_points() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found: dict[str, str] = project["entry-points"][GROUP]
    return found


def test_every_plugin_folder_has_its_entry_point_and_back() -> None:
    builtins = {k: v for k, v in entry_points().items() if v.startswith(BUILTIN_PREFIX)}
    assert set(builtins) == folders()
    for name, target in builtins.items():
        module = target.partition(":")[0]
        assert module == f"{BUILTIN_PREFIX}{name}", f"entry point {name} names {target}"
        cls = load(target)
        assert cls.id == name, f"{target} has id {cls.id!r}, its entry point says {name!r}"
        assert builtin(cls)


def test_the_plugins_package_holds_only_plugin_folders() -> None:
    stray = {
        p.name
        for p in PLUGINS.iterdir()
        if p.name not in ("__init__.py", "__pycache__") and not (p / "__init__.py").is_file()
    }
    assert stray == set()
