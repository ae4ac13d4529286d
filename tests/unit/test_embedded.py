from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from unity.compose.embedded import (
    EmbeddedServer,
    NatsServer,
    PidFile,
    PostgresServer,
    ServerError,
    free_port,
    spawn,
    stop_process,
)


def test_pidfile_finds_a_leftover_process_and_ignores_a_recycled_pid(tmp_path: Path) -> None:
    proc = spawn([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "log")
    pidfile = PidFile(tmp_path / "x.pid")
    pidfile.write(proc.pid)
    stale = pidfile.stale_process()
    assert stale is not None and stale.pid == proc.pid
    stop_process(stale, 15, 5, "sleeper")
    proc.wait(5)
    assert pidfile.stale_process() is None
    # A pid file naming a live pid with another start time is not ours.
    pidfile.path.write_text(f'{{"pid": {psutil.Process().pid}, "created": 1.0}}')
    assert pidfile.stale_process() is None


def test_stop_process_kills_what_ignores_the_signal(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print(1, flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stdout.readline()
        stop_process(proc, 15, 0.5, "stubborn")
    assert proc.returncode == -9


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_taken_port_is_a_clear_error_naming_it_not_a_ready_server(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = NatsServer(tmp_path, port, "unity", "secret")
        with pytest.raises(ServerError) as caught:
            server.start()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "in use" in message and "UNITY_NATS_PORT" in message
    assert "\n" not in message
    assert server.proc is None and not server.pidfile.path.exists()


class _Squatter(EmbeddedServer):
    """A child that lives but never listens: only the port's other owner answers there."""

    name = "squatter"

    def argv(self) -> list[str]:
        code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(9)"
        return [sys.executable, "-c", code, str(self.data_dir / "child.pid")]


def test_ready_means_our_child_listens_not_that_someone_does(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _Squatter(tmp_path, port)
        with pytest.raises(ServerError, match=rf"did not listen on 127\.0\.0\.1:{port}"):
            server.start(timeout=3)
    child = int((tmp_path / "child.pid").read_text())
    assert not psutil.pid_exists(child)


@pytest.fixture
def private_parent() -> Iterator[tuple[Path, Path]]:
    """A 0700 folder (like /root) and, beside it, a folder the PostgreSQL account can enter."""
    private = Path(tempfile.mkdtemp(prefix="unity-private-"))
    open_base = Path(tempfile.mkdtemp(prefix="unity-shared-"))
    open_base.chmod(0o711)
    yield private, open_base
    shutil.rmtree(private, ignore_errors=True)
    shutil.rmtree(open_base, ignore_errors=True)


async def _query(server: PostgresServer, sql: str) -> object:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=server.port, user="unity", password="pw", database="unity"
    )
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL changes account only under root")
def test_postgres_as_root_under_a_private_parent_keeps_its_cluster_where_it_can_reach(
    private_parent: tuple[Path, Path],
) -> None:
    private, open_base = private_parent
    data = private / "clone" / ".unity"
    shared = open_base / "unity"
    server = PostgresServer(data, free_port(), "pw", "nobody", shared_home=shared)
    try:
        server.start()
        asyncio.run(_query(server, "CREATE TABLE kept (x int)"))
    finally:
        server.stop()
    link = data / "postgres"
    assert link.is_symlink() and server.pgdata.parent.parent == shared
    assert link.resolve() == server.pgdata.resolve()
    assert server.pgdata.stat().st_uid == pwd.getpwnam("nobody").pw_uid
    assert (server.pgdata.parent / "data_dir").read_text().strip() == str(data)
    # Nothing outside the data dir and the shared home was opened up for PostgreSQL.
    assert stat.S_IMODE(private.stat().st_mode) == 0o700

    again = PostgresServer(data, free_port(), "pw", "nobody", shared_home=shared)
    try:
        again.start()
        assert asyncio.run(_query(again, "SELECT count(*) FROM kept")) == 0
    finally:
        again.stop()
    assert again.pgdata == server.pgdata


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL changes account only under root")
def test_postgres_as_root_with_nowhere_reachable_names_the_folder_and_the_remedy(
    private_parent: tuple[Path, Path],
) -> None:
    private, _ = private_parent
    data = private / "clone" / ".unity"
    # The shared home is inside the private folder too, so the account reaches neither.
    server = PostgresServer(data, free_port(), "pw", "nobody", shared_home=private / "shared")
    with pytest.raises(ServerError) as caught:
        server.start()
    message = str(caught.value)
    assert f"cannot enter {private}," in message
    assert "UNITY_DATA_DIR" in message and "UNITY_POSTGRES_OS_USER" in message
    assert "\n" not in message
    assert not (data / "postgres").exists() and not list((private / "shared").iterdir())
    assert server.proc is None
