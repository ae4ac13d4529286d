"""Installed plugins by id, imported only when asked for (issue 18: a collector's RSS)."""

from __future__ import annotations

import subprocess
import sys

from unity.sdk.discovery import Installed, discover

PROBE = """
import sys
from unity.sdk.discovery import Installed
installed = Installed()
cls = installed["cpu"]
plugins = sorted(m for m in sys.modules if m.startswith("unity.collectors.plugins."))
print(cls.id, ",".join(plugins))
"""


def test_asking_for_one_plugin_imports_only_its_module() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out[0] == "cpu"
    imported = {m.split(".")[3] for m in out[1].split(",")}
    assert imported == {"cpu"}, imported


def test_walking_it_gives_what_discover_gives() -> None:
    installed = Installed()
    assert installed.get("no_such_plugin") is None
    assert installed["memory"] is discover()["memory"]
    assert dict(installed) == discover()
    assert len(installed) == len(discover())
