"""Valkey / Redis from the INFO text: clients, memory, ops, keyspace, persistence, replicas."""

from __future__ import annotations

import importlib.util
import urllib.parse
from typing import Any

import msgspec

from unity.collectors.command import read_secret
from unity.sdk import Health, Metric, Plugin, Sink

EXTRA = "needs the 'valkey' extra: pip install 'unity-telemetry[valkey]'"

# INFO field -> published metric (numbers taken as they are).
GAUGES = {
    "connected_clients": "valkey_connected_clients",
    "blocked_clients": "valkey_blocked_clients",
    "used_memory": "valkey_memory_used_bytes",
    "used_memory_rss": "valkey_memory_rss_bytes",
    "maxmemory": "valkey_memory_max_bytes",
    "mem_fragmentation_ratio": "valkey_memory_fragmentation_ratio",
    "uptime_in_seconds": "valkey_uptime_seconds",
    "rdb_changes_since_last_save": "valkey_rdb_changes_since_last_save",
    "rdb_last_save_time": "valkey_rdb_last_save_timestamp",
    "aof_enabled": "valkey_aof_enabled",
    "connected_slaves": "valkey_connected_replicas",
}
COUNTERS = {
    "total_commands_processed": "valkey_commands_processed_total",
    "total_connections_received": "valkey_connections_received_total",
    "rejected_connections": "valkey_rejected_connections_total",
    "keyspace_hits": "valkey_keyspace_hits_total",
    "keyspace_misses": "valkey_keyspace_misses_total",
    "expired_keys": "valkey_expired_keys_total",
    "evicted_keys": "valkey_evicted_keys_total",
}


def parse_info(text: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """INFO's ``field:value`` lines, and its keyspace lines (``db0:keys=3,expires=1,...``).

    Parsed from the server's text on purpose: client libraries turn keyspace lines into dicts
    of their own shape (the old monitor then read them as strings).
    """
    fields: dict[str, str] = {}
    keyspace: dict[str, dict[str, str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            section = line[1:].strip().lower()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        if section == "keyspace" and name.startswith("db"):
            keyspace[name] = dict(p.partition("=")[::2] for p in value.split(","))
        else:
            fields[name] = value
    return fields, keyspace


def number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def unit_of(metric: str) -> str:
    if metric.endswith("_bytes"):
        return "bytes"
    if metric.endswith(("_seconds", "_timestamp")):
        return "seconds"
    return ""


class Server(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # valkey://host:port or redis://host:port (or rediss://, valkeys:// for TLS); no password.
    url: str
    name: str = ""
    username: str = ""
    password_env: str = ""
    password_file: str = ""

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("valkey", "valkeys", "redis", "rediss", "unix"):
            raise ValueError("url must be valkey://host:port (or redis://, rediss://, unix://)")
        if parts.password is not None:
            raise ValueError("url must not hold a password: use password_env or password_file")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = urllib.parse.urlsplit(self.url)
        return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


class ValkeyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    servers: list[Server] = []
    connect_timeout: float = 5.0


class ValkeyPlugin(Plugin):
    id = "valkey"
    name = "Valkey / Redis"
    description = (
        "Per Valkey or Redis server: clients, memory, ops, keyspace, persistence, replicas."
    )
    category = "database"
    Config = ValkeyConfig
    metrics = (
        *(Metric(m, unit_of(m), "gauge", f"INFO {f}") for f, m in GAUGES.items()),
        *(Metric(m, "", "counter", f"INFO {f}") for f, m in COUNTERS.items()),
        Metric(
            "valkey_hit_ratio_percent", "percent", "gauge", "keyspace hits / lookups since start"
        ),
        Metric("valkey_keys", "", "gauge", "keys per database (INFO keyspace)"),
        Metric("valkey_keys_expiring", "", "gauge", "keys with a TTL per database"),
        Metric("valkey_rdb_last_bgsave_ok", "", "gauge", "1 when the last RDB save succeeded"),
        Metric("valkey_aof_last_write_ok", "", "gauge", "1 when the last AOF write succeeded"),
        Metric("valkey_is_replica", "", "gauge", "1 when this server replicates another"),
        Metric(
            "valkey_master_link_up", "", "gauge", "replica: 1 when its link to the primary is up"
        ),
        Metric("valkey_replication_lag_bytes", "bytes", "gauge", "replica: primary offset - own"),
        Metric("valkey_replica_lag_seconds", "seconds", "gauge", "primary: since a replica's ack"),
        Metric("valkey_replica_lag_bytes", "bytes", "gauge", "primary: offset a replica lacks"),
    )

    config: ValkeyConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("valkey") is None:
            return EXTRA
        return None if self.config.servers else "no servers configured"

    def collect(self, sink: Sink) -> None:
        if importlib.util.find_spec("valkey") is None:
            raise RuntimeError(EXTRA)
        self._errors = []
        for server in self.config.servers:
            try:
                text = self.read_info(server)
            except Exception as exc:  # valkey's errors and OSError: a health line per server
                self._errors.append(f"{server.label}: {type(exc).__name__}: {exc}")
                continue
            fields, keyspace = parse_info(text)
            emit(sink, {"server": server.label}, fields, keyspace)
        if len(self._errors) == len(self.config.servers):
            raise RuntimeError("; ".join(self._errors))

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None

    def read_info(self, server: Server) -> str:
        import valkey

        password = read_secret(server.password_env, server.password_file)
        pool = valkey.ConnectionPool.from_url(  # type: ignore[no-untyped-call]
            server.url,
            username=server.username or None,
            password=password,
            socket_timeout=self.config.connect_timeout,
            socket_connect_timeout=self.config.connect_timeout,
        )
        conn = pool.make_connection()
        try:
            # The raw reply, not the client's parsed dict: keyspace lines are read from text.
            conn.send_command("INFO", "all")
            reply: Any = conn.read_response()
        finally:
            conn.disconnect()
            pool.disconnect()
        return reply.decode() if isinstance(reply, bytes) else str(reply)


def emit(
    sink: Sink, base: dict[str, str], fields: dict[str, str], keyspace: dict[str, dict[str, str]]
) -> None:
    for field, metric in (*GAUGES.items(), *COUNTERS.items()):
        value = number(fields.get(field))
        if value is not None:
            sink.add(metric, value, base)
    hits, misses = number(fields.get("keyspace_hits")), number(fields.get("keyspace_misses"))
    if hits is not None and misses is not None and hits + misses > 0:
        sink.add("valkey_hit_ratio_percent", 100.0 * hits / (hits + misses), base)
    for db, values in keyspace.items():
        for key, metric in (("keys", "valkey_keys"), ("expires", "valkey_keys_expiring")):
            value = number(values.get(key))
            if value is not None:
                sink.add(metric, value, {**base, "db": db})
    for field, metric in (
        ("rdb_last_bgsave_status", "valkey_rdb_last_bgsave_ok"),
        ("aof_last_write_status", "valkey_aof_last_write_ok"),
    ):
        if field in fields:
            sink.add(metric, 1.0 if fields[field] == "ok" else 0.0, base)
    replica = fields.get("role") == "slave"
    sink.add("valkey_is_replica", 1.0 if replica else 0.0, base)
    own = number(fields.get("master_repl_offset"))
    if replica:
        sink.add(
            "valkey_master_link_up", 1.0 if fields.get("master_link_status") == "up" else 0.0, base
        )
        # slave_repl_offset is what this replica has processed; master_repl_offset on a replica
        # is the primary's offset as last told.
        processed = number(fields.get("slave_repl_offset"))
        if own is not None and processed is not None:
            sink.add("valkey_replication_lag_bytes", max(0.0, own - processed), base)
        return
    for name, text in fields.items():
        if not (name.startswith("slave") and name[5:].isdigit()):
            continue
        peer = dict(p.partition("=")[::2] for p in text.split(","))
        labels = {**base, "replica": f"{peer.get('ip', '')}:{peer.get('port', '')}"}
        lag, offset = number(peer.get("lag")), number(peer.get("offset"))
        if lag is not None:
            sink.add("valkey_replica_lag_seconds", lag, labels)
        if own is not None and offset is not None:
            sink.add("valkey_replica_lag_bytes", max(0.0, own - offset), labels)
