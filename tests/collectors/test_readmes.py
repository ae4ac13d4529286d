"""Every plugin folder documents itself: README with the sample config verbatim and every metric."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from unity import collectors
from unity.collectors.runtime.agent import AgentPlugin
from unity.collectors.runtime.config import parse_config
from unity.sdk import Plugin
from unity.sdk.discovery import discover

PLUGINS = Path(collectors.__file__).parent / "plugins"
AGENT = Path(collectors.__file__).parent / "runtime" / "agent"
# Every folder of collectors/plugins/ is a built-in: adding one needs no list here
# (test_plugin_folders checks that the entry points agree).
BUILTINS = tuple(sorted(p.name for p in PLUGINS.iterdir() if (p / "__init__.py").is_file()))


def folder_of(name: str) -> Path:
    return AGENT if name == "agent" else PLUGINS / name


def plugin_class(folder: str) -> type[Plugin]:
    return AgentPlugin if folder == "agent" else discover()[folder]


@pytest.mark.parametrize("folder", [*BUILTINS, "agent"])
def test_readme_embeds_sample_and_lists_every_metric(folder: str) -> None:
    readme = (folder_of(folder) / "README.md").read_text()
    sample = (folder_of(folder) / "sample.toml").read_text()
    assert f"```toml\n{sample}```" in readme, "README must embed sample.toml verbatim"
    for section in ("## Configuration", "## Metrics", "## Example output"):
        assert section in readme
    cls = plugin_class(folder)
    for metric in cls.metrics:
        row = re.search(rf"^\| `{re.escape(metric.name)}` \| ([^|]*) \| (\w+) \|", readme, re.M)
        assert row, f"{metric.name} missing from the metrics table"
        assert row.group(1).strip() == (metric.unit or "-")
        assert row.group(2) == metric.kind
    rows = re.findall(r"^\| `(\w+)` \|", readme, re.M)
    assert set(rows) == {m.name for m in cls.metrics}, "table lists a metric the plugin lacks"


@pytest.mark.parametrize("folder", [*BUILTINS, "agent"])
def test_sample_is_a_valid_collector_config(folder: str) -> None:
    sample = tomllib.loads((folder_of(folder) / "sample.toml").read_text())
    config = parse_config(sample, discover(), "h")
    if folder != "agent":
        [spec] = config.plugins
        assert spec.plugin == folder
        # The sample shows the defaults: what it spells out is what a bare table gets.
        cls = plugin_class(folder)
        assert spec.config == cls.Config() or folder == "processes"


def test_every_builtin_is_an_entry_point_and_has_a_folder() -> None:
    found = discover()
    for name in BUILTINS:
        assert found[name].__module__ == f"unity.collectors.plugins.{name}"
    folders = {p.parent.name for p in PLUGINS.glob("*/README.md")}
    assert folders == set(BUILTINS)


def test_every_metric_name_is_declared_once_and_namespaced() -> None:
    seen: dict[str, str] = {}
    classes: list[type[Plugin]] = [*(discover()[n] for n in BUILTINS), AgentPlugin]
    for cls in classes:
        for metric in cls.metrics:
            assert metric.name not in seen, f"{metric.name} in {cls.id} and {seen[metric.name]}"
            seen[metric.name] = cls.id
            assert metric.kind in ("gauge", "counter")
            if metric.kind == "counter" and metric.unit == "":
                assert metric.name.endswith("_total"), metric.name
