"""Reverse proxies through their admin APIs: Traefik, Caddy and Nginx Proxy Manager."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
from collections import Counter
from typing import Any, Literal

import msgspec

from unity.collectors import appapi
from unity.sdk import Health, Metric, Plugin, Sink

_PROM = re.compile(r"^(\w+)\{(.*)\}\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Proxy(appapi.AppConfig, frozen=True, forbid_unknown_fields=True):
    name: str = ""
    kind: Literal["traefik", "caddy", "npm"] = "traefik"
    # Traefik behind basic auth: the user (the password from token_env/_file);
    # Nginx Proxy Manager: the login e-mail (the password from token_env/_file).
    username: str = ""
    # Traefik: also read its Prometheus /metrics (requests and open connections per entrypoint).
    metrics: bool = False
    page_size: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name or not self.url:
            raise ValueError("every proxy needs a name and a url")
        if self.kind == "npm" and not self.username:
            raise ValueError(f"proxy {self.name!r}: Nginx Proxy Manager needs username (e-mail)")


class ReverseProxyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    proxies: list[Proxy] = []


def npm_time(text: Any) -> float | None:
    """NPM stores UTC times without a zone ("2027-01-15 10:11:12"): read them as UTC."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition (names with labels only)."""
    found = []
    for line in text.splitlines():
        m = _PROM.match(line)
        if m:
            try:
                value = float(m[3])
            except ValueError:
                continue
            found.append((m[1], dict(_LABEL.findall(m[2])), value))
    return found


class ReverseProxyPlugin(Plugin):
    id = "reverse_proxy"
    name = "Reverse proxies"
    description = "Traefik routers/services, Caddy routes/upstreams, NPM hosts and certificates."
    category = "apps"
    tags = ("traefik", "caddy", "nginx-proxy-manager", "proxy")
    Config = ReverseProxyConfig
    metrics = (
        Metric("proxy_up", "", "gauge", "1 when the admin API answered"),
        Metric("proxy_routers", "", "gauge", "routers, routes or proxy hosts by status"),
        Metric("proxy_services", "", "gauge", "services by status (Traefik)"),
        Metric("proxy_servers", "", "gauge", "backend servers per service"),
        Metric("proxy_servers_up", "", "gauge", "backend servers up per service"),
        Metric(
            "proxy_certificate_expiry_seconds", "seconds", "gauge", "until a certificate expires"
        ),
        Metric("proxy_requests_total", "", "counter", "requests per entrypoint and code (Traefik)"),
        Metric("proxy_open_connections", "", "gauge", "open connections per entrypoint (Traefik)"),
    )

    config: ReverseProxyConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._problems: list[str] = []
        self._last: dict[str, list[str]] = {}

    def unavailable(self) -> str | None:
        if not self.config.proxies:
            return "no proxies configured"
        return None

    def collect(self, sink: Sink) -> None:
        self._problems = []
        done = 0
        for proxy in self.config.proxies:
            try:
                issues = {"traefik": self.traefik, "caddy": self.caddy, "npm": self.npm}[
                    proxy.kind
                ](proxy, sink)
            except appapi.AppError as exc:
                sink.add("proxy_up", 0.0, {"proxy": proxy.name, "kind": proxy.kind})
                self._problems.append(str(exc))
                continue
            done += 1
            sink.add("proxy_up", 1.0, {"proxy": proxy.name, "kind": proxy.kind})
            self._changed(sink, proxy, issues)
        if self.config.proxies and not done:
            raise appapi.AppError("; ".join(self._problems))

    def _changed(self, sink: Sink, proxy: Proxy, issues: list[str]) -> None:
        before = self._last.get(proxy.name)
        self._last[proxy.name] = issues
        if issues == before or (before is None and not issues):
            return
        sink.event(
            "proxy_problems",
            f"{proxy.name}: {len(issues)} problem(s)" + (f": {issues[0]}" if issues else ""),
            {"proxy": proxy.name, "kind": proxy.kind, "problems": issues[:100]},
            "warning" if issues else "info",
        )

    # Traefik: /api/http/routers and /api/http/services, every page (X-Next-Page).
    def _traefik_list(self, client: appapi.Client, path: str, size: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = "1"
        while page:
            answer = client.request(path, query={"page": page, "per_page": str(size)})
            try:
                chunk = json.loads(answer.body)
            except ValueError:
                raise appapi.AppError(f"Traefik: {path} did not answer JSON") from None
            if not isinstance(chunk, list):
                raise appapi.AppError(f"Traefik: {path} answered no list")
            items.extend(i for i in chunk if isinstance(i, dict))
            following = answer.headers.get("x-next-page", "")
            page = following if following not in ("", "1") and following != page else ""
        return items

    def traefik(self, proxy: Proxy, sink: Sink) -> list[str]:
        headers = {}
        if proxy.username:
            secret = appapi.token(proxy, "Traefik")
            pair = base64.b64encode(f"{proxy.username}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        client = appapi.Client("Traefik", proxy, headers)
        routers = self._traefik_list(client, "/api/http/routers", proxy.page_size)
        services = self._traefik_list(client, "/api/http/services", proxy.page_size)
        base = {"proxy": proxy.name}
        issues = []
        for status, n in sorted(Counter(str(r.get("status", "")) for r in routers).items()):
            sink.add("proxy_routers", n, base | {"status": status})
        for status, n in sorted(Counter(str(s.get("status", "")) for s in services).items()):
            sink.add("proxy_services", n, base | {"status": status})
        for router in routers:
            if router.get("status") != "enabled":
                why = "; ".join(router.get("error") or []) or str(router.get("status"))
                issues.append(f"router {router.get('name')}: {why}")
        for service in services:
            servers = service.get("serverStatus") or {}
            if not isinstance(servers, dict) or not servers:
                continue
            labels = base | {"service": str(service.get("name", ""))}
            up = sum(1 for v in servers.values() if v == "UP")
            sink.add("proxy_servers", len(servers), labels)
            sink.add("proxy_servers_up", up, labels)
            issues += [
                f"service {labels['service']}: {u} {v}" for u, v in servers.items() if v != "UP"
            ]
        if proxy.metrics:
            self._traefik_metrics(client, sink, base)
        return issues

    def _traefik_metrics(self, client: appapi.Client, sink: Sink, base: dict[str, str]) -> None:
        text = client.request("/metrics", headers={"Accept": "text/plain"}).body.decode(
            errors="replace"
        )
        requests: dict[tuple[str, str], float] = {}
        connections: dict[str, float] = {}
        for name, labels, value in prometheus(text):
            if name == "traefik_entrypoint_requests_total":
                where = (labels.get("entrypoint", ""), labels.get("code", ""))
                requests[where] = requests.get(where, 0.0) + value
            elif name == "traefik_entrypoint_open_connections":
                entry = labels.get("entrypoint", "")
                connections[entry] = connections.get(entry, 0.0) + value
        for (entrypoint, code), value in sorted(requests.items()):
            sink.add("proxy_requests_total", value, base | {"entrypoint": entrypoint, "code": code})
        for entrypoint, value in sorted(connections.items()):
            sink.add("proxy_open_connections", value, base | {"entrypoint": entrypoint})

    # Caddy: the admin API's /config/ and /reverse_proxy/upstreams.
    def caddy(self, proxy: Proxy, sink: Sink) -> list[str]:
        client = appapi.Client("Caddy", proxy)
        config = client.json("/config/")
        servers = (((config or {}).get("apps") or {}).get("http") or {}).get("servers") or {}
        routes = sum(len(s.get("routes") or []) for s in servers.values() if isinstance(s, dict))
        base = {"proxy": proxy.name}
        sink.add("proxy_routers", routes, base | {"status": "enabled"})
        upstreams = client.json("/reverse_proxy/upstreams")
        if not isinstance(upstreams, list):
            raise appapi.AppError("Caddy: /reverse_proxy/upstreams answered no list")
        healthy = [u for u in upstreams if isinstance(u, dict) and not u.get("fails")]
        labels = base | {"service": "reverse_proxy"}
        sink.add("proxy_servers", len(upstreams), labels)
        sink.add("proxy_servers_up", len(healthy), labels)
        return [
            f"upstream {u.get('address')}: {u.get('fails')} failure(s)"
            for u in upstreams
            if isinstance(u, dict) and u.get("fails")
        ]

    # Nginx Proxy Manager: a token from /api/tokens, then proxy hosts and certificates.
    def npm(self, proxy: Proxy, sink: Sink) -> list[str]:
        login = appapi.Client("Nginx Proxy Manager", proxy)
        body = json.dumps({"identity": proxy.username, "secret": appapi.token(proxy, "NPM")})
        answer = login.json(
            "/api/tokens",
            method="POST",
            body=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        if not isinstance(answer, dict) or not answer.get("token"):
            raise appapi.AppError("Nginx Proxy Manager: /api/tokens gave no token")
        client = appapi.Client(
            "Nginx Proxy Manager", proxy, {"Authorization": f"Bearer {answer['token']}"}
        )
        hosts = client.json("/api/nginx/proxy-hosts")
        certificates = client.json("/api/nginx/certificates")
        if not isinstance(hosts, list) or not isinstance(certificates, list):
            raise appapi.AppError("Nginx Proxy Manager: hosts or certificates are not lists")
        base = {"proxy": proxy.name}
        issues = []
        status: Counter[str] = Counter()
        for host in hosts:
            online = (host.get("meta") or {}).get("nginx_online", True)
            state = "disabled" if not host.get("enabled") else "enabled" if online else "error"
            status[state] += 1
            if state == "error":
                names = ",".join(host.get("domain_names") or [])
                issues.append(f"host {names}: {(host.get('meta') or {}).get('nginx_err')}")
        for state, n in sorted(status.items()):
            sink.add("proxy_routers", n, base | {"status": state})
        now = time.time()
        for cert in certificates:
            expires = npm_time(cert.get("expires_on"))
            if expires is None:
                continue
            name = str(cert.get("nice_name") or ",".join(cert.get("domain_names") or []))
            sink.add(
                "proxy_certificate_expiry_seconds", expires - now, base | {"certificate": name}
            )
            if expires < now:
                issues.append(f"certificate {name} expired")
        return issues

    def health(self) -> Health | None:
        if self._problems:
            return Health("degraded", "; ".join(self._problems)[:500])
        return None
