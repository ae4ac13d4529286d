"""MongoDB: connections, opcounters, memory, cache and replica set state from serverStatus."""

from __future__ import annotations

import datetime as dt
import importlib.util
import urllib.parse
from typing import Any

import msgspec

from unity.collectors.command import read_secret
from unity.sdk import Health, Metric, Plugin, Sink

EXTRA = "needs the 'mongodb' extra: pip install 'unity-telemetry[mongodb]'"
OPS = ("insert", "query", "update", "delete", "getmore", "command")
NO_REPLICATION = 76  # replSetGetStatus on a server started without --replSet


class Server(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # mongodb://host:port/?options (no credentials: they come from username and the password).
    uri: str = "mongodb://127.0.0.1:27017/"
    name: str = ""
    username: str = ""
    password_env: str = ""
    password_file: str = ""

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.uri)
        if parts.scheme not in ("mongodb", "mongodb+srv"):
            raise ValueError("uri must be mongodb://host:port/")
        if parts.username or parts.password:
            raise ValueError("uri must hold no credentials: use username and password_env")

    @property
    def label(self) -> str:
        return self.name or (urllib.parse.urlsplit(self.uri).netloc or "localhost")


class MongodbConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    servers: list[Server] = []
    connect_timeout: float = 5.0


def number(doc: Any, *path: str) -> float | None:
    for part in path:
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return float(doc) if isinstance(doc, int | float) and not isinstance(doc, bool) else None


Reading = list[tuple[str, float, dict[str, str]]]


def read_status(status: dict[str, Any]) -> Reading:
    out: Reading = []

    def put(metric: str, value: float | None, labels: dict[str, str] | None = None) -> None:
        if value is not None:
            out.append((metric, value, labels or {}))

    put("mongodb_uptime_seconds", number(status, "uptime"))
    put("mongodb_connections", number(status, "connections", "current"), {"state": "current"})
    put("mongodb_connections", number(status, "connections", "available"), {"state": "available"})
    put("mongodb_connections", number(status, "connections", "active"), {"state": "active"})
    put("mongodb_connections_created_total", number(status, "connections", "totalCreated"))
    for op in OPS:
        put("mongodb_operations_total", number(status, "opcounters", op), {"op": op})
        put("mongodb_replicated_operations_total", number(status, "opcountersRepl", op), {"op": op})
    mib = 1024.0 * 1024.0
    for field in ("resident", "virtual"):
        value = number(status, "mem", field)  # serverStatus reports MiB
        put(f"mongodb_memory_{field}_bytes", None if value is None else value * mib)
    put("mongodb_network_receive_bytes", number(status, "network", "bytesIn"))
    put("mongodb_network_transmit_bytes", number(status, "network", "bytesOut"))
    put("mongodb_requests_total", number(status, "network", "numRequests"))
    put(
        "mongodb_cache_bytes", number(status, "wiredTiger", "cache", "bytes currently in the cache")
    )
    put(
        "mongodb_cache_max_bytes", number(status, "wiredTiger", "cache", "maximum bytes configured")
    )
    put(
        "mongodb_cache_dirty_bytes",
        number(status, "wiredTiger", "cache", "tracked dirty bytes in the cache"),
    )
    return out


def optime(member: dict[str, Any]) -> dt.datetime | None:
    when = member.get("optimeDate")
    if isinstance(when, dt.datetime):
        # BSON dates decode naive; they are UTC.
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return None


def read_replset(doc: dict[str, Any]) -> Reading:
    members = doc.get("members") or []
    primary = next((optime(m) for m in members if m.get("state") == 1), None)
    out: Reading = [("mongodb_replset_my_state", float(doc.get("myState", 0)), {})]
    for member in members:
        labels = {"member": str(member.get("name", member.get("_id")))}
        out.append(("mongodb_replset_member_health", float(member.get("health", 0)), labels))
        out.append(("mongodb_replset_member_state", float(member.get("state", 0)), labels))
        applied = optime(member)
        if primary is not None and applied is not None and member.get("state") == 2:
            lag = max(0.0, (primary - applied).total_seconds())
            out.append(("mongodb_replset_member_lag_seconds", lag, labels))
    return out


class MongodbPlugin(Plugin):
    id = "mongodb"
    name = "MongoDB"
    description = "Per MongoDB server: connections, opcounters, memory, cache, replica set."
    category = "database"
    Config = MongodbConfig
    metrics = (
        Metric("mongodb_uptime_seconds", "seconds", "gauge", "since mongod started"),
        Metric("mongodb_connections", "", "gauge", "connections by state"),
        Metric("mongodb_connections_created_total", "", "counter", "connections accepted"),
        Metric("mongodb_operations_total", "", "counter", "opcounters by operation"),
        Metric("mongodb_replicated_operations_total", "", "counter", "opcountersRepl"),
        Metric("mongodb_memory_resident_bytes", "bytes", "gauge", "resident memory"),
        Metric("mongodb_memory_virtual_bytes", "bytes", "gauge", "virtual memory"),
        Metric("mongodb_network_receive_bytes", "bytes", "counter", "bytes in"),
        Metric("mongodb_network_transmit_bytes", "bytes", "counter", "bytes out"),
        Metric("mongodb_requests_total", "", "counter", "requests received"),
        Metric("mongodb_cache_bytes", "bytes", "gauge", "WiredTiger cache in use"),
        Metric("mongodb_cache_max_bytes", "bytes", "gauge", "WiredTiger cache size"),
        Metric("mongodb_cache_dirty_bytes", "bytes", "gauge", "WiredTiger cache dirty"),
        Metric(
            "mongodb_replset_my_state", "", "gauge", "this member's state (1 primary, 2 secondary)"
        ),
        Metric("mongodb_replset_member_health", "", "gauge", "1 when the member is reachable"),
        Metric("mongodb_replset_member_state", "", "gauge", "the member's state number"),
        Metric(
            "mongodb_replset_member_lag_seconds",
            "seconds",
            "gauge",
            "a secondary's applied optime behind the primary's",
        ),
    )

    config: MongodbConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("pymongo") is None:
            return EXTRA
        return None if self.config.servers else "no servers configured"

    def collect(self, sink: Sink) -> None:
        if importlib.util.find_spec("pymongo") is None:
            raise RuntimeError(EXTRA)
        from pymongo.errors import PyMongoError

        self._errors = []
        for server in self.config.servers:
            try:
                reading = self.one(server)
            except PyMongoError as exc:
                self._errors.append(f"{server.label}: {type(exc).__name__}: {exc}")
                continue
            for metric, value, labels in reading:
                sink.add(metric, value, {"server": server.label, **labels})
        if len(self._errors) == len(self.config.servers):
            raise RuntimeError("; ".join(self._errors))

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None

    def one(self, server: Server) -> Reading:
        from pymongo import MongoClient
        from pymongo.errors import OperationFailure

        timeout_ms = int(self.config.connect_timeout * 1000)
        options: dict[str, Any] = {}
        if server.username:
            options["username"] = server.username
            options["password"] = read_secret(server.password_env, server.password_file) or ""
        client: MongoClient[dict[str, Any]] = MongoClient(
            server.uri,
            directConnection=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            appname="unity-collector",
            **options,
        )
        try:
            status = client.admin.command("serverStatus")
            reading = read_status(status)
            try:
                reading += read_replset(client.admin.command("replSetGetStatus"))
            except OperationFailure as exc:
                if exc.code != NO_REPLICATION:
                    raise
        finally:
            client.close()
        return reading
