"""mysql against Debian's MariaDB, a primary and a replica started by the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.mysql import MysqlPlugin
from unity.sdk.testing import run

INSTALL = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
SERVER = shutil.which("mariadbd") or (
    "/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None
)
pytestmark = pytest.mark.skipif(
    INSTALL is None or SERVER is None, reason="MariaDB not installed (Debian: mariadb-server)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Maria:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def sock(self) -> str:
        return str(self.folder / "sock")

    def root(self) -> pymysql.Connection[Any]:
        return pymysql.connect(unix_socket=self.sock, user="root", autocommit=True)

    def sql(self, *statements: str) -> list[Any]:
        conn = self.root()
        try:
            with conn.cursor() as cur:
                rows: list[Any] = []
                for statement in statements:
                    cur.execute(statement)
                    rows = list(cur.fetchall())
                return rows
        finally:
            conn.close()


def start(data: Path, folder: Path, server_id: int) -> Maria:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        str(SERVER),
        "--no-defaults",
        f"--datadir={data}",
        f"--socket={folder / 'sock'}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--pid-file={folder / 'pid'}",
        f"--log-error={folder / 'error.log'}",
        "--innodb-buffer-pool-size=16M",
        f"--server-id={server_id}",
        f"--log-bin={folder / 'binlog'}",
    ]
    if os.geteuid() == 0:
        argv.append("--user=root")  # mariadbd refuses root unless told; the test's files are root's
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    maria = Maria(folder, port, process)
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError((folder / "error.log").read_text()[-2000:])
        if not Path(maria.sock).exists():
            time.sleep(0.1)
            continue
        try:
            maria.root().close()
            return maria
        except pymysql.MySQLError:
            time.sleep(0.1)
    raise RuntimeError("mariadbd did not accept connections within 30 s")


@pytest.fixture(scope="module")
def maria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Maria, Maria, str]]:
    base = tmp_path_factory.mktemp("maria")
    template = base / "template"
    argv = [
        str(INSTALL),
        "--no-defaults",
        f"--datadir={template}",
        "--skip-test-db",
        "--auth-root-authentication-method=normal",
    ]
    if os.geteuid() == 0:
        argv.append("--user=root")
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    shutil.copytree(template, base / "replica-data")
    primary = start(template, base / "primary", 1)
    replica = start(base / "replica-data", base / "replica", 2)
    password = uuid.uuid4().hex
    try:
        primary.sql(
            "SET sql_log_bin = 0",  # the replica makes its own users: nothing to replay
            f"CREATE USER 'monitor'@'127.0.0.1' IDENTIFIED BY '{password}'",
            "GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO 'monitor'@'127.0.0.1'",
            f"CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY '{password}'",
            "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'",
        )
        replica.sql(
            f"CREATE USER 'monitor'@'127.0.0.1' IDENTIFIED BY '{password}'",
            "GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO 'monitor'@'127.0.0.1'",
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port}, "
            f"MASTER_USER='repl', MASTER_PASSWORD='{password}', MASTER_USE_GTID=slave_pos",
            "START SLAVE",
        )
        yield primary, replica, password
    finally:
        for server in (replica, primary):
            server.process.terminate()
            server.process.wait(30)


def plugin(**server: Any) -> MysqlPlugin:
    return MysqlPlugin(MysqlPlugin.parse_config({"servers": [server]}))


def test_status_counters_and_buffer_pool(
    maria: tuple[Maria, Maria, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, _, password = maria
    monkeypatch.setenv("MYSQL_MONITOR_PASSWORD", password)
    p = plugin(port=primary.port, name="db", password_env="MYSQL_MONITOR_PASSWORD")
    first = by_key(collect(p))
    primary.sql("SELECT SLEEP(0)", "SELECT 1")
    found = by_key(collect(p))
    db = {"server": "db"}
    assert found[key("mysql_questions_total", **db)] > first[key("mysql_questions_total", **db)]
    assert found[key("mysql_threads_connected", **db)] >= 1
    assert found[key("mysql_threads_running", **db)] >= 1
    assert found[key("mysql_innodb_buffer_pool_size_bytes", **db)] == 16 * 1024 * 1024
    pages = found[key("mysql_innodb_buffer_pool_pages", **db)]
    assert 0 < found[key("mysql_innodb_buffer_pool_pages_free", **db)] <= pages
    assert found[key("mysql_max_connections", **db)] == 151  # MariaDB's default
    assert found[key("mysql_is_replica", **db)] == 0.0
    assert found[key("mysql_uptime_seconds", **db)] >= 0


def test_replica_threads_and_lag(maria: tuple[Maria, Maria, str], tmp_path: Path) -> None:
    _, replica, password = maria
    secret = tmp_path / "pw"
    secret.write_text(password + "\n")
    p = plugin(port=replica.port, name="replica", password_file=str(secret))
    found: dict[Any, float] = {}
    for _ in range(100):
        found = by_key(collect(p))
        if (
            found.get(key("mysql_replica_sql_running", server="replica", source="127.0.0.1")) == 1.0
            and key("mysql_replica_lag_seconds", server="replica", source="127.0.0.1") in found
        ):
            break
        time.sleep(0.1)
    at = {"server": "replica", "source": "127.0.0.1"}
    assert found[key("mysql_is_replica", server="replica")] == 1.0
    assert found[key("mysql_replica_io_running", **at)] == 1.0
    assert found[key("mysql_replica_sql_running", **at)] == 1.0
    assert found[key("mysql_replica_lag_seconds", **at)] >= 0


def test_a_stopped_replica_has_no_lag_rather_than_zero(
    maria: tuple[Maria, Maria, str], tmp_path: Path
) -> None:
    _, replica, password = maria
    secret = tmp_path / "pw"
    secret.write_text(password)
    replica.sql("STOP SLAVE SQL_THREAD")
    try:
        found = by_key(collect(plugin(port=replica.port, name="r", password_file=str(secret))))
    finally:
        replica.sql("START SLAVE SQL_THREAD")
    at = {"server": "r", "source": "127.0.0.1"}
    assert found[key("mysql_replica_sql_running", **at)] == 0.0
    assert key("mysql_replica_lag_seconds", **at) not in found


async def test_wrong_password_and_several_servers(
    maria: tuple[Maria, Maria, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, replica, password = maria
    monkeypatch.setenv("GOOD", password)
    monkeypatch.setenv("BAD", "nope")
    p = MysqlPlugin(
        MysqlPlugin.parse_config(
            {
                "servers": [
                    {"port": primary.port, "name": "a", "password_env": "GOOD"},
                    {"port": replica.port, "name": "b", "password_env": "BAD"},
                ]
            }
        )
    )
    result = await run(p)
    assert result.report.status == "degraded"
    assert result.report.message.startswith("b: OperationalError: (1045")
    assert "nope" not in result.report.message
    result = await run(plugin(port=free_port(), name="gone"))
    assert result.report.status == "error"
    assert "gone: OperationalError: (2003" in result.report.message
