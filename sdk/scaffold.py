"""``unity plugin new <id>``: a plugin folder that passes ``unity plugin check`` and its test."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from unity.sdk.check import ID_RE

__all__ = ["ScaffoldError", "scaffold"]

_PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "unity-plugin-$id"
version = "0.1.0"
description = "Unity plugin $id: free space of one directory's filesystem"
requires-python = ">=3.11"
dependencies = ["unity-telemetry"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points."unity.plugins"]
$id = "$module:$cls"

[tool.setuptools]
packages = ["$module"]

[tool.pytest.ini_options]
pythonpath = ["."]
""")

_CODE = Template('''\
"""Unity plugin $id: total, free and used space of the filesystem holding one directory."""

from __future__ import annotations

import shutil

import msgspec

from unity import sdk


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Settings of $id (see sample.toml)."""

    path: str = "/"


class $cls(sdk.Plugin):
    id = "$id"
    name = "$title"
    version = "0.1.0"
    description = "Total, free and used space of the filesystem holding one directory"
    author = "you"
    category = "storage"
    tags = ("disk",)
    Config = Config
    metrics = (
        sdk.Metric("${prefix}_total_bytes", "bytes", "gauge", "Size of the filesystem"),
        sdk.Metric("${prefix}_free_bytes", "bytes", "gauge", "Space left for unprivileged users"),
        sdk.Metric("${prefix}_used_percent", "percent", "gauge", "Used share of the filesystem"),
    )

    def collect(self, sink: sdk.Sink) -> None:
        assert isinstance(self.config, Config)
        usage = shutil.disk_usage(self.config.path)
        labels = {"path": self.config.path}
        sink.add("${prefix}_total_bytes", usage.total, labels)
        sink.add("${prefix}_free_bytes", usage.free, labels)
        sink.add("${prefix}_used_percent", 100.0 * usage.used / usage.total, labels)


if __name__ == "__main__":
    sdk.run($cls)
''')

_TEST = Template("""\
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from $module import Config, $cls
from unity.sdk import ConfigError
from unity.sdk.check import check
from unity.sdk.testing import collect


def test_values_match_the_filesystem(tmp_path: Path) -> None:
    sink = collect($cls(Config(path=str(tmp_path))))
    usage = shutil.disk_usage(tmp_path)
    labels = {"path": str(tmp_path)}
    assert sink.value("${prefix}_total_bytes", labels) == usage.total
    assert 0 <= sink.value("${prefix}_used_percent", labels) <= 100


def test_sample_config_is_valid() -> None:
    config = $cls.load_config(Path(__file__).parent.parent / "sample.toml")
    assert isinstance(config, Config)


def test_unknown_config_key_is_named() -> None:
    with pytest.raises(ConfigError, match="'pth'"):
        $cls.parse_config({"pth": "/"})


def test_plugin_meets_the_contract() -> None:
    assert [f for f in check($cls) if f.level == "error"] == []
""")

_SAMPLE = Template("""\
# Config of the $id plugin. Unknown keys are an error.
# Directory whose filesystem is measured.
path = "/"
""")

_README = Template("""\
# $title (`$id`)

Total, free and used space of the filesystem that holds one directory.

## Configuration

```toml
$sample```

## Metrics

| name | unit | kind | meaning |
|---|---|---|---|
| `${prefix}_total_bytes` | bytes | gauge | Size of the filesystem |
| `${prefix}_free_bytes` | bytes | gauge | Space left for unprivileged users |
| `${prefix}_used_percent` | percent | gauge | Used share of the filesystem |

Every sample has the label `path`.

## Run it

```sh
pip install -e '.[test]'              # the entry point unity.plugins: $id, and pytest
unity plugin check $id --config sample.toml
python -m pytest -q                   # the plugin's own tests
unity plugin run $id --config sample.toml --once   # beside `unity up`: its data folder's login
UNITY_NATS_URL=nats://hub:14222 UNITY_NATS_USER=... UNITY_NATS_PASSWORD=... \\
    unity plugin run $id --config sample.toml
```
""")


class ScaffoldError(ValueError):
    """The plugin id is not usable or the folder exists."""


def scaffold(plugin_id: str, parent: Path) -> Path:
    """Create ``parent/<id>/`` with the code, README.md, sample.toml, a test and pyproject.toml."""
    if not ID_RE.fullmatch(plugin_id):
        raise ScaffoldError(f"plugin id {plugin_id!r} must match {ID_RE.pattern}")
    root = parent / plugin_id
    if root.exists():
        raise ScaffoldError(f"{root} already exists")
    prefix = plugin_id.replace("-", "_")
    words = re.split(r"[-_]", plugin_id)
    values = {
        "id": plugin_id,
        "prefix": prefix,
        "module": f"unity_plugin_{prefix}",
        "cls": "".join(w.capitalize() for w in words) + "Plugin",
        "title": " ".join(w.capitalize() for w in words),
    }
    sample = _SAMPLE.substitute(values)
    files = {
        "pyproject.toml": _PYPROJECT.substitute(values),
        f"{values['module']}/__init__.py": _CODE.substitute(values),
        f"tests/test_{prefix}.py": _TEST.substitute(values),
        "sample.toml": sample,
        "README.md": _README.substitute(values, sample=sample),
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
