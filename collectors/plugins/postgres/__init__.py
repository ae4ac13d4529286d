"""PostgreSQL servers: connections by state, per-database counters and size, replication lag."""

from __future__ import annotations

import asyncio
import importlib.util
import urllib.parse
from typing import Any

import msgspec

from unity.collectors.command import read_secret
from unity.sdk import Health, Metric, Plugin, Sink

EXTRA = "needs the 'postgres' extra: pip install 'unity-telemetry[postgres]'"

# pg_stat_database column -> published counter.
COUNTERS = {
    "xact_commit": "postgres_commits_total",
    "xact_rollback": "postgres_rollbacks_total",
    "blks_read": "postgres_blocks_read_total",
    "blks_hit": "postgres_blocks_hit_total",
    "tup_returned": "postgres_tuples_returned_total",
    "tup_fetched": "postgres_tuples_fetched_total",
    "tup_inserted": "postgres_tuples_inserted_total",
    "tup_updated": "postgres_tuples_updated_total",
    "tup_deleted": "postgres_tuples_deleted_total",
    "deadlocks": "postgres_deadlocks_total",
    "conflicts": "postgres_conflicts_total",
}

DATABASES = """
SELECT datname, pg_database_size(datname) AS size, temp_bytes, xact_commit, xact_rollback,
       blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted,
       deadlocks, conflicts
FROM pg_stat_database
WHERE datname IS NOT NULL AND datname <> ALL($1::text[])
  AND datname IN (SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn)
"""
STATES = """
SELECT coalesce(state, 'background') AS state, count(*) AS n
FROM pg_stat_activity WHERE backend_type = 'client backend' OR state IS NOT NULL GROUP BY 1
"""
REPLICAS = """
SELECT coalesce(application_name, '') AS name, client_addr::text AS addr,
       pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(replay_lsn, flush_lsn, write_lsn))::float8
         AS bytes,
       extract(epoch FROM replay_lag)::float8 AS seconds
FROM pg_stat_replication
"""
STANDBY_LAG = """
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END
"""


class Server(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # postgresql://user@host:port/database (no password: it comes from password_env/_file).
    dsn: str
    name: str = ""
    password_env: str = ""
    password_file: str = ""
    # Databases to leave out (templates and those refusing connections always are).
    exclude_databases: list[str] = []

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.dsn)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("dsn must be postgresql://user@host:port/database")
        if parts.password is not None or "password=" in parts.query:
            raise ValueError("dsn must not hold a password: use password_env or password_file")

    @property
    def label(self) -> str:
        parts = urllib.parse.urlsplit(self.dsn)
        return self.name or f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


class PostgresConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    servers: list[Server] = []
    connect_timeout: float = 5.0


class PostgresPlugin(Plugin):
    id = "postgres"
    name = "PostgreSQL"
    description = "Per PostgreSQL server: connections, per-database activity and size, replication."
    category = "database"
    Config = PostgresConfig
    metrics = (
        Metric("postgres_connections", "", "gauge", "client connections by state"),
        Metric("postgres_max_connections", "", "gauge", "the max_connections setting"),
        Metric("postgres_database_size_bytes", "bytes", "gauge", "pg_database_size"),
        *(Metric(m, "", "counter", f"pg_stat_database.{c}") for c, m in COUNTERS.items()),
        Metric("postgres_temp_written_bytes", "bytes", "counter", "pg_stat_database.temp_bytes"),
        Metric(
            "postgres_cache_hit_percent",
            "percent",
            "gauge",
            "blocks hit / read+hit, since stats reset",
        ),
        Metric("postgres_in_recovery", "", "gauge", "1 on a standby, 0 on a primary"),
        Metric(
            "postgres_replication_lag_seconds",
            "seconds",
            "gauge",
            "standby: replay behind the primary",
        ),
        Metric(
            "postgres_replica_lag_bytes",
            "bytes",
            "gauge",
            "primary: WAL a replica has not replayed (received, for pg_receivewal)",
        ),
        Metric(
            "postgres_replica_lag_seconds", "seconds", "gauge", "primary: a replica's replay_lag"
        ),
    )

    config: PostgresConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("asyncpg") is None:
            return EXTRA
        return None if self.config.servers else "no servers configured"

    def collect(self, sink: Sink) -> None:
        if importlib.util.find_spec("asyncpg") is None:
            raise RuntimeError(EXTRA)
        # collect() runs in a worker thread, so this loop is the thread's own.
        results = asyncio.run(self.gather())
        self._errors = []
        for server, result in zip(self.config.servers, results, strict=True):
            if isinstance(result, BaseException):
                self._errors.append(f"{server.label}: {type(result).__name__}: {result}")
            else:
                for name, value, labels in result:
                    sink.add(name, value, {"server": server.label, **labels})
        if len(self._errors) == len(self.config.servers):
            raise RuntimeError("; ".join(self._errors))

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None

    async def gather(self) -> list[list[tuple[str, float, dict[str, str]]] | BaseException]:
        return await asyncio.gather(
            *(self.one(s) for s in self.config.servers), return_exceptions=True
        )

    async def one(self, server: Server) -> list[tuple[str, float, dict[str, str]]]:
        import asyncpg

        password = read_secret(server.password_env, server.password_file)
        conn = await asyncpg.connect(
            server.dsn, password=password, timeout=self.config.connect_timeout
        )
        try:
            return await read(conn, server)
        finally:
            await conn.close()


async def read(conn: Any, server: Server) -> list[tuple[str, float, dict[str, str]]]:
    out: list[tuple[str, float, dict[str, str]]] = []
    for row in await conn.fetch(STATES):
        out.append(("postgres_connections", row["n"], {"state": row["state"]}))
    out.append(("postgres_max_connections", float(await conn.fetchval("SHOW max_connections")), {}))
    for row in await conn.fetch(DATABASES, server.exclude_databases):
        labels = {"database": row["datname"]}
        out.append(("postgres_database_size_bytes", row["size"], labels))
        for column, metric in COUNTERS.items():
            out.append((metric, row[column], labels))
        out.append(("postgres_temp_written_bytes", row["temp_bytes"], labels))
        blocks = row["blks_hit"] + row["blks_read"]
        if blocks:
            out.append(("postgres_cache_hit_percent", 100.0 * row["blks_hit"] / blocks, labels))
    standby = bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
    out.append(("postgres_in_recovery", 1.0 if standby else 0.0, {}))
    if standby:
        lag = await conn.fetchval(STANDBY_LAG)
        if lag is not None:
            out.append(("postgres_replication_lag_seconds", lag, {}))
    else:
        for row in await conn.fetch(REPLICAS):
            labels = {"replica": row["name"] or row["addr"] or "local"}
            if row["bytes"] is not None:
                out.append(("postgres_replica_lag_bytes", row["bytes"], labels))
            out.append(("postgres_replica_lag_seconds", row["seconds"] or 0.0, labels))
    return out
