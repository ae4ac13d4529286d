"""MySQL and MariaDB servers: threads, questions, slow queries, InnoDB buffer pool, replication."""

from __future__ import annotations

import importlib.util
from typing import Any

import msgspec

from unity.collectors.command import read_secret
from unity.sdk import Health, Metric, Plugin, Sink

EXTRA = "needs the 'mysql' extra: pip install 'unity-telemetry[mysql]'"

# SHOW GLOBAL STATUS name -> (metric, counter?)
STATUS = {
    "Threads_connected": ("mysql_threads_connected", False),
    "Threads_running": ("mysql_threads_running", False),
    "Uptime": ("mysql_uptime_seconds", False),
    "Questions": ("mysql_questions_total", True),
    "Slow_queries": ("mysql_slow_queries_total", True),
    "Connections": ("mysql_connections_total", True),
    "Aborted_connects": ("mysql_aborted_connects_total", True),
    "Innodb_buffer_pool_pages_total": ("mysql_innodb_buffer_pool_pages", False),
    "Innodb_buffer_pool_pages_free": ("mysql_innodb_buffer_pool_pages_free", False),
    "Innodb_buffer_pool_pages_dirty": ("mysql_innodb_buffer_pool_pages_dirty", False),
    "Innodb_buffer_pool_read_requests": ("mysql_innodb_buffer_pool_read_requests_total", True),
    "Innodb_buffer_pool_reads": ("mysql_innodb_buffer_pool_disk_reads_total", True),
}
VARIABLES = {
    "max_connections": "mysql_max_connections",
    "innodb_buffer_pool_size": "mysql_innodb_buffer_pool_size_bytes",
}


class Server(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 3306
    # A unix socket instead of host and port (e.g. /run/mysqld/mysqld.sock).
    unix_socket: str = ""
    user: str = "monitor"
    password_env: str = ""
    password_file: str = ""
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.unix_socket or f"{self.host}:{self.port}"


class MysqlConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    servers: list[Server] = []
    connect_timeout: float = 5.0


def flag(value: Any) -> float:
    return 1.0 if str(value).lower() == "yes" else 0.0


class MysqlPlugin(Plugin):
    id = "mysql"
    name = "MySQL / MariaDB"
    description = "Per MySQL or MariaDB server: threads, questions, slow queries, InnoDB, replicas."
    category = "database"
    Config = MysqlConfig
    metrics = (
        *(
            Metric(
                m,
                "seconds" if m.endswith("_seconds") else "",
                "counter" if c else "gauge",
                f"SHOW GLOBAL STATUS {n}",
            )
            for n, (m, c) in STATUS.items()
        ),
        Metric("mysql_max_connections", "", "gauge", "the max_connections variable"),
        Metric("mysql_innodb_buffer_pool_size_bytes", "bytes", "gauge", "innodb_buffer_pool_size"),
        Metric("mysql_is_replica", "", "gauge", "1 when SHOW REPLICA STATUS has a row"),
        Metric("mysql_replica_io_running", "", "gauge", "1 when the replica's I/O thread runs"),
        Metric("mysql_replica_sql_running", "", "gauge", "1 when the replica's SQL thread runs"),
        Metric("mysql_replica_lag_seconds", "seconds", "gauge", "Seconds_Behind_Master (Source)"),
    )

    config: MysqlConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("pymysql") is None:
            return EXTRA
        return None if self.config.servers else "no servers configured"

    def collect(self, sink: Sink) -> None:
        if importlib.util.find_spec("pymysql") is None:
            raise RuntimeError(EXTRA)
        import pymysql

        self._errors = []
        for server in self.config.servers:
            try:
                self.read(server, sink)
            except (pymysql.MySQLError, OSError) as exc:
                self._errors.append(f"{server.label}: {type(exc).__name__}: {exc}")
        if len(self._errors) == len(self.config.servers):
            raise RuntimeError("; ".join(self._errors))

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None

    def read(self, server: Server, sink: Sink) -> None:
        import pymysql
        import pymysql.cursors

        conn = pymysql.connect(
            host=server.host,
            port=server.port,
            unix_socket=server.unix_socket or None,
            user=server.user,
            password=read_secret(server.password_env, server.password_file) or "",
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.connect_timeout,
            cursorclass=pymysql.cursors.DictCursor,
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS")
                status = {row["Variable_name"]: row["Value"] for row in cur.fetchall()}
                cur.execute(
                    "SHOW GLOBAL VARIABLES WHERE Variable_name IN (%s, %s)", tuple(VARIABLES)
                )
                variables = {row["Variable_name"]: row["Value"] for row in cur.fetchall()}
                try:
                    cur.execute("SHOW REPLICA STATUS")  # MariaDB 10.5.1+, MySQL 8.0.22+
                except pymysql.err.ProgrammingError:
                    cur.execute("SHOW SLAVE STATUS")
                replicas = cur.fetchall()
        finally:
            conn.close()
        base = {"server": server.label}
        for name, (metric, _) in STATUS.items():
            if name in status:
                sink.add(metric, float(status[name]), base)
        for name, metric in VARIABLES.items():
            if name in variables:
                sink.add(metric, float(variables[name]), base)
        sink.add("mysql_is_replica", 1.0 if replicas else 0.0, base)
        for row in replicas:
            # One row per source (MariaDB multi-source names them by Connection_name).
            source = row.get("Connection_name") or row.get("Source_Host") or row.get("Master_Host")
            labels = {**base, "source": str(source or "")}
            io = row.get("Replica_IO_Running", row.get("Slave_IO_Running"))
            sql = row.get("Replica_SQL_Running", row.get("Slave_SQL_Running"))
            sink.add("mysql_replica_io_running", flag(io), labels)
            sink.add("mysql_replica_sql_running", flag(sql), labels)
            lag = row.get("Seconds_Behind_Source", row.get("Seconds_Behind_Master"))
            if lag is not None:  # NULL while a thread is stopped: unknown, not 0
                sink.add("mysql_replica_lag_seconds", float(lag), labels)
