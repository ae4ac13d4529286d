"""The built wheel: one top-level package of ours, and the light install (base dependencies
only, no server extra) runs `unity collector` and `unity plugin run` in a venv of its own."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import msgspec
import pytest

from tests.helpers import private_nats
from tests.integration.test_plugin_run import with_streams
from unity.compose.cli import SERVER_MODULES
from unity.schemas import HealthReport

REPO = Path(__file__).resolve().parents[2]
# The base dependencies of pyproject.toml, as installed in the test venv: linked, not downloaded.
BASE = ("msgspec", "nats", "psutil")
SKIP = ("__pycache__", "build", "dist", "*.egg-info", ".unity", "examples")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built offline from a copy (setuptools writes build/ beside sources)."""
    source = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    for top in ("schemas", "sdk", "collectors", "ingest", "api", "migrations", "compose"):
        shutil.copytree(REPO / top, source / top, ignore=shutil.ignore_patterns(*SKIP))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation"),
            *("-w", str(out), str(source)),
        ],
        check=True,
        timeout=300,
        env={**os.environ, "PIP_NO_CACHE_DIR": "1"},
    )
    (built,) = out.glob("unity_telemetry-*.whl")
    return built


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A venv with the wheel and the base dependencies only; pip checks nothing else is needed."""
    root = tmp_path_factory.mktemp("light")
    venv.create(root, with_pip=False, symlinks=True)
    (site,) = root.glob("lib/python*/site-packages")
    ours = Path(sysconfig.get_paths()["purelib"])
    for name in BASE:
        for found in [ours / name, *ours.glob(f"{name}*.dist-info")]:
            (site / found.name).symlink_to(found)
    subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "--python", str(root / "bin" / "python"), "install", "-q"),
            *("--no-index", "--no-build-isolation", str(wheel)),
        ],
        check=True,
        timeout=300,
        env={**os.environ, "PIP_NO_CACHE_DIR": "1"},
    )
    return root


def light_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("UNITY_", "PYTHON"))}
    return {**base, "UNITY_HOST_NAME": "lightbox", **extra}


def test_the_wheel_installs_exactly_one_top_level_package(light: Path, wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    dist_info = {top for top in tops if top.endswith(".dist-info")}
    assert tops - dist_info == {"unity"}
    (site,) = light.glob("lib/python*/site-packages")
    installed = {p.name for p in site.iterdir() if not p.is_symlink()}
    assert installed == {"unity", *dist_info}


def test_the_light_install_lacks_every_server_library(light: Path) -> None:
    probe = "import importlib.util as u, sys; print(*(m for m in sys.argv[1:] if u.find_spec(m)))"
    found = subprocess.run(
        [str(light / "bin" / "python"), "-c", probe, *sorted(SERVER_MODULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert found.stdout.strip() == ""


def test_light_collector_once_runs_and_server_commands_name_the_extra(light: Path) -> None:
    unity = str(light / "bin" / "unity")
    once = subprocess.run(
        [unity, "collector", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        env=light_env(UNITY_COLLECT_PLUGINS="cpu,memory,system"),
    )
    assert once.returncode == 0, once.stderr
    plugins = {msgspec.json.decode(line)["message"]["plugin"] for line in once.stdout.splitlines()}
    assert plugins == {"cpu", "memory", "system", "unity-collector"}
    listed = subprocess.run(
        [unity, "collector", "--list"], capture_output=True, text=True, timeout=60, env=light_env()
    )
    assert listed.returncode == 0 and "  cpu\n" in listed.stdout, listed.stderr
    for command in (["up"], ["ingest"], ["api"], ["migrate"]):
        done = subprocess.run(
            [unity, *command], capture_output=True, text=True, timeout=60, env=light_env()
        )
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "pip install 'unity-telemetry[server]'" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr


async def test_light_plugin_run_once_publishes(light: Path) -> None:
    with private_nats() as server:
        await with_streams(server)
        done = await asyncio.to_thread(
            subprocess.run,
            [str(light / "bin" / "unity"), "plugin", "run", "cpu", "--once"],
            capture_output=True,
            text=True,
            timeout=120,
            env=light_env(
                UNITY_NATS_URL=f"nats://127.0.0.1:{server.port}",
                UNITY_NATS_USER=server.user,
                UNITY_NATS_PASSWORD=server.password,
            ),
        )
    assert done.returncode == 0, done.stderr
    report = msgspec.json.decode(done.stdout.strip(), type=HealthReport)
    assert (report.host, report.plugin, report.status) == ("lightbox", "cpu", "ok")
