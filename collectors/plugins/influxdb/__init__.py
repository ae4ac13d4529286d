"""InfluxDB 2: health, ping, version and buckets through its HTTP API."""

from __future__ import annotations

import socket
import time
import urllib.parse
from typing import Any

import msgspec

from unity.collectors import webapi
from unity.collectors.command import read_secret
from unity.sdk import Health, Metric, Plugin, Sink

PAGE = 100


class InfluxdbConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str = "http://127.0.0.1:8086"
    # An API token (read access to buckets) from the environment or a file, sent as a header.
    token_env: str = ""
    token_file: str = ""
    # Only this organisation's buckets (its name); empty: every bucket the token can read.
    org: str = ""
    verify_tls: bool = True
    ca_file: str = ""
    request_timeout: float = 5.0

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be http(s)://host:port")
        if parts.query or parts.password:
            raise ValueError("url must hold no query or password: use token_env or token_file")


class InfluxdbPlugin(Plugin):
    id = "influxdb"
    name = "InfluxDB 2"
    description = "InfluxDB 2: health, ping latency, version, buckets and their retention."
    category = "database"
    Config = InfluxdbConfig
    metrics = (
        Metric("influxdb_up", "", "gauge", "1 when /health says pass"),
        Metric("influxdb_ping_seconds", "seconds", "gauge", "round trip of /ping"),
        Metric("influxdb_buckets", "", "gauge", "buckets by type (user, system)"),
        Metric(
            "influxdb_bucket_retention_seconds",
            "seconds",
            "gauge",
            "how long a bucket keeps data (0: forever)",
        ),
    )

    config: InfluxdbConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._problem = ""

    def unavailable(self) -> str | None:
        parts = urllib.parse.urlsplit(self.config.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname or "", port), timeout=0.5).close()
        except OSError as exc:
            return f"nothing listens at {parts.hostname}:{port} ({type(exc).__name__})"
        return None

    def get(self, path: str, **kwargs: Any) -> webapi.Response:
        c = self.config
        return webapi.get(
            c.url.rstrip("/") + path,
            timeout=c.request_timeout,
            verify=c.verify_tls,
            ca_file=c.ca_file,
            **kwargs,
        )

    def collect(self, sink: Sink) -> None:
        self._problem = ""
        # /health answers 503 with its JSON when failing: both are an answer here.
        health = self.get("/health", ok=range(200, 600))
        doc = health.json() if health.body else {}
        status = doc.get("status") if isinstance(doc, dict) else None
        if status is None:
            raise webapi.WebApiError(f"/health answered {health.status} without a status")
        sink.add("influxdb_up", 1.0 if status == "pass" else 0.0)
        if status != "pass":
            self._problem = f"health {status}: {doc.get('message', '')}"
        started = time.perf_counter()
        ping = self.get("/ping")
        sink.add("influxdb_ping_seconds", time.perf_counter() - started)
        info = {
            "version": doc.get("version") or ping.headers.get("x-influxdb-version", ""),
            "commit": doc.get("commit", ""),
            "build": ping.headers.get("x-influxdb-build", ""),
        }
        token = read_secret(self.config.token_env, self.config.token_file)
        buckets = self.buckets(token) if token else []
        counts: dict[str, int] = {}
        for bucket in buckets:
            kind = str(bucket.get("type", "user"))
            counts[kind] = counts.get(kind, 0) + 1
            rules = [r for r in bucket.get("retentionRules") or [] if r.get("type") == "expire"]
            keep = float(rules[0].get("everySeconds", 0)) if rules else 0.0
            sink.add("influxdb_bucket_retention_seconds", keep, {"bucket": str(bucket["name"])})
        for kind, count in counts.items():
            sink.add("influxdb_buckets", count, {"type": kind})
        sink.event(
            "influxdb_info",
            f"InfluxDB {info['version']} ({info['build'] or 'unknown build'})",
            {**info, "buckets": [str(b["name"]) for b in buckets]},
        )

    def buckets(self, token: str) -> list[dict[str, Any]]:
        """Every page of /api/v2/buckets (the API pages by limit and offset, at most 100)."""
        found: list[dict[str, Any]] = []
        query = {"limit": str(PAGE), "offset": "0"}
        if self.config.org:
            query["org"] = self.config.org
        while True:
            doc = self.get(
                "/api/v2/buckets?" + urllib.parse.urlencode(query),
                headers={"Authorization": f"Token {token}"},
            ).json()
            page = doc.get("buckets") or []
            found.extend(page)
            if not page or not doc.get("links", {}).get("next"):
                return found
            query["offset"] = str(len(found))

    def health(self) -> Health | None:
        return Health("degraded", self._problem) if self._problem else None
