"""Plugin-author tooling: scaffold, check, discovery by entry point, connection settings."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from unity.compose.cli import main as unity
from unity.sdk import ConnectionSettings, ConnectionSettingsError, Metric, Plugin, Sink
from unity.sdk.discovery import DiscoveryError, discover, load
from unity.sdk.scaffold import ScaffoldError, scaffold

REPO = Path(__file__).resolve().parents[2]


class BrokenPlugin(Plugin):
    """Valid metadata, but its one real run fails: `unity plugin check` must say so."""

    id = "broken"
    name = "Broken"
    description = "fails to collect"
    author = "tests"
    metrics = (Metric("broken_value", "", "gauge", "never produced"),)

    def collect(self, sink: Sink) -> None:
        raise FileNotFoundError("/run/broken.sock")


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{REPO}"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_scaffold_passes_check_and_its_own_test_unchanged(tmp_path: Path) -> None:
    assert unity(["plugin", "new", "disk-free", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "disk-free"
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
        "pyproject.toml",
        "README.md",
        "sample.toml",
        "unity_plugin_disk_free/__init__.py",
        "tests/test_disk_free.py",
    }
    assert (root / "sample.toml").read_text() in (root / "README.md").read_text()
    target = "unity_plugin_disk_free:DiskFreePlugin"
    checked = _python(
        ["-m", "unity.compose", "plugin", "check", target, "--config", "sample.toml"], root
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "disk-free: ok (0 error(s), 0 warning(s))" in checked.stdout
    tested = _python(["-m", "pytest", "-q", "-p", "no:cacheprovider"], root)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "4 passed" in tested.stdout


def test_scaffold_readme_installs_what_it_runs(tmp_path: Path) -> None:
    root = scaffold("free", tmp_path)
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    readme = (root / "README.md").read_text()
    assert "python -m pytest" in readme and "pip install -e '.[test]'" in readme
    assert [d for d in project["optional-dependencies"]["test"] if d.startswith("pytest")]


def test_scaffold_refuses_bad_ids_and_existing_folders(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="must match"):
        scaffold("Bad Id", tmp_path)
    scaffold("ok", tmp_path)
    with pytest.raises(ScaffoldError, match="already exists"):
        scaffold("ok", tmp_path)


def test_check_command_fails_on_a_broken_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    assert unity(["plugin", "check", "unity.sdk.no_such_module:Plugin"]) == 2
    assert "cannot import unity.sdk.no_such_module:Plugin" in capsys.readouterr().err
    assert unity(["plugin", "check", "no-such-id"]) == 2
    assert "no installed plugin 'no-such-id'" in capsys.readouterr().err
    assert unity(["plugin", "check", "cpu"]) == 0
    assert "cpu: ok" in capsys.readouterr().out
    assert unity(["plugin", "check", f"{__name__}:BrokenPlugin"]) == 1
    out = capsys.readouterr().out
    assert "error: collect: FileNotFoundError: /run/broken.sock" in out
    assert "broken: FAILED (1 error(s), 0 warning(s))" in out


def test_schemas_command_checks_the_checked_in_files() -> None:
    assert unity(["plugin", "schemas", "--check"]) == 0


def _dist(site: Path, name: str, module: str, plugin_id: str) -> None:
    """Install a minimal distribution by hand: a module and a dist-info with an entry point."""
    (site / f"{module}.py").write_text(
        "import sdk\n\n\n"
        "class P(sdk.Plugin):\n"
        f"    id = {plugin_id!r}\n"
        "    def collect(self, sink):\n"
        "        pass\n"
    )
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[unity.plugins]\n{plugin_id} = {module}:P\n")


def test_duplicate_plugin_ids_are_an_error_naming_both_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dist(tmp_path, "first-dist", "first_mod", "twin")
    _dist(tmp_path, "second-dist", "second_mod", "twin")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DiscoveryError) as err:
        discover()
    message = str(err.value)
    assert "'twin'" in message
    assert "first_mod:P (first-dist)" in message and "second_mod:P (second-dist)" in message


def test_an_entry_point_that_is_not_a_plugin_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "odd-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: odd\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[unity.plugins]\nodd = os:path\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DiscoveryError, match=r"os:path \(odd\) is not a Plugin"):
        discover()


def test_load_by_id_or_import_path() -> None:
    from unity.collectors.plugins.cpu import CpuPlugin

    assert load("cpu") is CpuPlugin
    assert load("unity.collectors.plugins.cpu:CpuPlugin") is CpuPlugin
    with pytest.raises(DiscoveryError, match="not a Plugin"):
        load("sdk:Sink")


def test_connection_settings_come_from_the_environment() -> None:
    conn = ConnectionSettings.from_env(
        {
            "UNITY_NATS_URL": "nats://nats.lan:4222",
            "UNITY_NATS_USER": "ups",
            "UNITY_NATS_PASSWORD": "s3cret",
            "UNITY_SUBJECT_ROOT": "lab",
            "UNITY_HOST_NAME": "nas",
        }
    )
    assert (conn.url, conn.user, conn.host) == ("nats://nats.lan:4222", "ups", "nas")
    assert conn.subjects.metrics("nas", "ups") == "lab.metrics.nas.ups"
    assert "s3cret" not in repr(conn)
    assert ConnectionSettings.from_env({}).url == "nats://127.0.0.1:14222"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UNITY_NATS_URL": "nats://u:p@host:4222"}, "must not carry credentials"),
        ({"UNITY_NATS_URL": "http://host"}, "not a nats:// URL"),
        ({"UNITY_NATS_CREDS": "/x.creds", "UNITY_NATS_PASSWORD": "p"}, "not both"),
    ],
)
def test_unsafe_connection_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConnectionSettingsError, match=message):
        ConnectionSettings.from_env(env)
