"""The import rules of docs/architecture.md, checked on the source: data flows one way."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "sdk", "collectors", "ingest", "api", "migrations", "compose")
# What each package may import of ours (a package, or one module of it); compose composes all.
ALLOWED: dict[str, tuple[str, ...]] = {
    "schemas": (),
    "sdk": ("schemas",),
    "collectors": ("sdk", "schemas"),
    "ingest": ("sdk", "schemas"),
    "api": ("schemas", "sdk.settings", "sdk.connection"),
    "migrations": ("schemas", "sdk.settings"),
    "compose": PACKAGES,
}
# Within an allowed package, modules that are not another's to use: API bodies are the API's.
FORBIDDEN: dict[str, tuple[str, ...]] = {"ingest": ("schemas.api",), "collectors": ("schemas.api",)}
# Open violations, each with why it is still there; the test fails once one is gone, so the
# list only shrinks.
KNOWN = {
    # POST /replay runs ingest's pipeline in the API process (a replay request to the ingest
    # service would end it).
    ("api/replay.py", "ingest.replay"),
}


def imported(path: Path) -> set[tuple[str, tuple[str, ...]]]:
    """Our modules ``path`` imports (without ``unity.``), each with the names taken from it."""
    found: set[tuple[str, tuple[str, ...]]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update((a.name, ()) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = tuple(a.name for a in node.names)
            if node.module == "unity":
                found.update((name, ()) for name in names)
            else:
                found.add((node.module, names))
    return {
        (module.removeprefix("unity."), names)
        for module, names in found
        if module.startswith("unity.") or module in PACKAGES
    }


def allowed(package: str, target: str) -> bool:
    if target.split(".")[0] == package:
        return True
    if any(target == f or target.startswith(f"{f}.") for f in FORBIDDEN.get(package, ())):
        return False
    return any(target == rule or target.startswith(f"{rule}.") for rule in ALLOWED[package])


def violations(root: Path) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            if "examples" in path.relative_to(root).parts:
                continue  # example plugins are packages of their own
            for module, names in imported(path):
                # "from unity.sdk import settings" takes a module: judge each name taken.
                if not allowed(package, module) and not (
                    names and all(allowed(package, f"{module}.{n}") for n in names)
                ):
                    found.add((str(path.relative_to(root)), module))
    return found


def test_imports_follow_the_rules() -> None:
    found = violations(REPO)
    assert found - KNOWN == set(), "imports against docs/architecture.md's rules"
    assert KNOWN - found == set(), "fixed: remove these from KNOWN"


def test_an_api_import_of_ingest_is_caught(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    shutil.copy(REPO / "api" / "health.py", tmp_path / "api" / "health.py")
    assert violations(tmp_path) == set()
    added = tmp_path / "api" / "health.py"
    added.write_text(added.read_text() + "\nfrom unity.ingest.streams import ensure_streams\n")
    assert violations(tmp_path) == {("api/health.py", "ingest.streams")}
    added.write_text(added.read_text() + "\nfrom unity import collectors\n")
    assert ("api/health.py", "collectors") in violations(tmp_path)
    (tmp_path / "ingest" / "cache.py").write_text("from unity.schemas.api import LatestValue\n")
    assert ("ingest/cache.py", "schemas.api") in violations(tmp_path)
