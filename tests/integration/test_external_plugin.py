"""An external plugin, a separate package installed with pip, discovered by entry point and run
as its own process, lands in PostgreSQL and /api/v1/latest."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import msgspec
import pytest

from tests.api.conftest import running_api
from tests.helpers import running_ingest, wait_for
from tests.servers import Env
from unity.schemas import HealthReport

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "sdk" / "examples" / "dirstat"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed by pip into its own target folder (offline, no build isolation).

    pip builds from a copy: setuptools writes build/ and *.egg-info next to the sources.
    """
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "dirstat"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation"),
            *("--target", str(target), str(source)),
        ],
        check=True,
        timeout=300,
        cwd=source,
        env={**os.environ, "PIP_NO_CACHE_DIR": "1"},
    )
    return target


def plugin_env(site: Path, env: Env) -> dict[str, str]:
    """The plugin process sees NATS through UNITY_NATS_* only; nothing secret on argv."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("UNITY_")}
    return {
        **base,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
        "UNITY_NATS_URL": env.ep.nats_url,
        "UNITY_NATS_USER": env.ep.nats_user or "",
        "UNITY_NATS_PASSWORD": env.ep.nats_password or "",
        "UNITY_SUBJECT_ROOT": env.root,
        "UNITY_HOST_NAME": "extbox",
    }


def python(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the venv's Python with the installed example importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_installed_package_is_discovered_by_entry_point(site: Path, tmp_path: Path) -> None:
    probe = (
        "from sdk.discovery import discover; import unity_example_dirstat as m; "
        "found = discover(); print(found['dirstat'] is m.DirStatPlugin, sorted(found))"
    )
    out = python(site, "-c", probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("True ") and "'dirstat'" in out.stdout
    config = tmp_path / "dirstat.toml"
    config.write_text(f'paths = ["{tmp_path}"]\n')
    checked = python(
        site, "-m", "unity.compose", "plugin", "check", "dirstat", "--config", str(config)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "dirstat: ok" in checked.stdout


def test_the_packages_own_tests_pass_against_the_installed_copy(site: Path) -> None:
    out = python(site, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=EXAMPLE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 passed" in out.stdout


async def latest_dirstat(env: Env) -> dict[str, float]:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT ON (s.id) s.name, v.value FROM series s"
            " JOIN samples v ON v.series_id = s.id"
            " WHERE s.host = 'extbox' AND s.plugin = 'dirstat' ORDER BY s.id, v.time DESC"
        )
        runs = await conn.fetchval(
            "SELECT count(*) FROM plugin_runs WHERE plugin = 'dirstat' AND status = 'ok'"
        )
    finally:
        await conn.close()
    return {r["name"]: r["value"] for r in rows} | {"runs": float(runs)}


async def test_standalone_external_plugin_reaches_postgres_and_the_api(
    site: Path, env: Env, tmp_path: Path
) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "a.bin").write_bytes(b"x" * 1000)
    (watched / "b.bin").write_bytes(b"y" * 24)
    config = tmp_path / "dirstat.toml"
    config.write_text(f'paths = ["{watched}"]\nrecursive = false\n')
    async with running_ingest(env):
        proc = await asyncio.create_subprocess_exec(
            str(site / "bin" / "unity-dirstat"),
            *("--config", str(config), "--interval", "1", "--no-watch"),
            env=plugin_env(site, env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:

            async def two_runs_stored() -> bool:
                got = await latest_dirstat(env)
                return got.get("runs", 0) >= 2 and "dirstat_bytes" in got

            await wait_for(two_runs_stored, within=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, stderr.decode()
        got = await latest_dirstat(env)
        assert (got["dirstat_files"], got["dirstat_bytes"]) == (2.0, 1024.0)
        async with running_api(env) as api:
            resp = await api.get("/latest", params={"host": "extbox"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    items = {i["name"]: i for i in body["items"] if i["plugin"] == "dirstat"}
    assert items["dirstat_bytes"]["value"] == 1024.0
    assert items["dirstat_bytes"]["unit"] == "bytes"
    assert items["dirstat_files"]["labels"] == {"path": str(watched)}
    assert 0 <= items["dirstat_newest_age_seconds"]["value"] < 600


async def test_plugin_run_by_entry_point_id_once_prints_the_report_and_stores_the_run(
    site: Path, env: Env, tmp_path: Path
) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "c.bin").write_bytes(b"z" * 10)
    config = tmp_path / "dirstat.toml"
    config.write_text(f'paths = ["{watched}"]\n')
    async with running_ingest(env):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "unity.compose", "plugin", "run", "dirstat", "--once", "--config", str(config)),
            env=plugin_env(site, env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, stderr.decode()
        # --once prints the run's health report, one JSON line, and nothing else.
        lines = stdout.decode().splitlines()
        assert len(lines) == 1, stdout
        report = msgspec.json.decode(lines[0], type=HealthReport)
        assert (report.host, report.plugin, report.status, report.samples) == (
            "extbox",
            "dirstat",
            "ok",
            3,
        )

        async def run_stored() -> bool:
            got = await latest_dirstat(env)
            return got.get("runs", 0) >= 1 and "dirstat_bytes" in got

        await wait_for(run_stored, within=60)
    got = await latest_dirstat(env)
    assert (got["dirstat_files"], got["dirstat_bytes"], got["runs"]) == (1.0, 10.0, 1.0)
