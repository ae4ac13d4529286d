"""Statistics of the resolver apps a homelab runs: Pi-hole v6, AdGuard Home, Unbound."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec

from unity.collectors import webapi
from unity.collectors.command import read_secret, run

Reading = list[tuple[str, float, dict[str, str]]]


class PiHole(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str
    name: str = ""
    password_env: str = ""
    password_file: str = ""
    verify_tls: bool = True


class AdGuard(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str
    name: str = ""
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    verify_tls: bool = True


class Unbound(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # unbound-control's argv prefix; the plugin adds `stats_noreset` (never resets counters).
    command: list[str] = msgspec.field(default_factory=lambda: ["unbound-control"])
    name: str = "unbound"


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def pihole(app: PiHole, timeout: float) -> Reading:
    """Pi-hole v6: log in for a session id, read /api/stats/summary, log out.

    The session id travels in the X-FTL-SID header, never in the query string; logging out
    matters because Pi-hole keeps a small number of sessions.
    """
    base = app.url.rstrip("/")
    password = read_secret(app.password_env, app.password_file) or ""
    opts: dict[str, Any] = {"timeout": timeout, "verify": app.verify_tls}
    auth = webapi.get_json(
        f"{base}/api/auth",
        method="POST",
        body=json.dumps({"password": password}).encode(),
        headers={"Content-Type": "application/json"},
        **opts,
    )
    session = auth.get("session", {}) if isinstance(auth, dict) else {}
    if not session.get("valid"):
        raise webapi.WebApiError(f"Pi-hole refused the login: {session.get('message', '')}")
    sid = str(session.get("sid") or "")
    headers = {"X-FTL-SID": sid} if sid else {}  # no password set: sid is null
    try:
        summary = webapi.get_json(f"{base}/api/stats/summary", headers=headers, **opts)
    finally:
        if sid:
            webapi.get(f"{base}/api/auth", method="DELETE", headers=headers, **opts)
    queries, clients, gravity = (summary.get(k, {}) for k in ("queries", "clients", "gravity"))
    fields = (
        ("dns_pihole_queries", queries.get("total")),
        ("dns_pihole_blocked", queries.get("blocked")),
        ("dns_pihole_blocked_percent", queries.get("percent_blocked")),
        ("dns_pihole_cached", queries.get("cached")),
        ("dns_pihole_forwarded", queries.get("forwarded")),
        ("dns_pihole_unique_domains", queries.get("unique_domains")),
        ("dns_pihole_clients_active", clients.get("active")),
        ("dns_pihole_blocklist_domains", gravity.get("domains_being_blocked")),
        ("dns_pihole_gravity_updated_timestamp", gravity.get("last_update")),
    )
    return [(m, v, {}) for m, raw in fields if (v := number(raw)) is not None]


def adguard(app: AdGuard, timeout: float) -> Reading:
    """AdGuard Home: /control/stats with HTTP basic auth (the stats window's totals)."""
    headers = {}
    password = read_secret(app.password_env, app.password_file)
    if app.username or password:
        pair = f"{app.username}:{password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    stats = webapi.get_json(
        f"{app.url.rstrip('/')}/control/stats",
        headers=headers,
        timeout=timeout,
        verify=app.verify_tls,
    )
    fields = (
        ("dns_adguard_queries", stats.get("num_dns_queries")),
        ("dns_adguard_blocked", stats.get("num_blocked_filtering")),
        ("dns_adguard_safebrowsing_blocked", stats.get("num_replaced_safebrowsing")),
        ("dns_adguard_parental_blocked", stats.get("num_replaced_parental")),
        ("dns_adguard_processing_seconds", stats.get("avg_processing_time")),
    )
    return [(m, v, {}) for m, raw in fields if (v := number(raw)) is not None]


UNBOUND = {
    "total.num.queries": "dns_unbound_queries_total",
    "total.num.cachehits": "dns_unbound_cache_hits_total",
    "total.num.cachemiss": "dns_unbound_cache_misses_total",
    "total.num.prefetch": "dns_unbound_prefetches_total",
    "total.num.expired": "dns_unbound_expired_answers_total",
    "total.requestlist.exceeded": "dns_unbound_requestlist_exceeded_total",
}


def parse_unbound(text: str) -> Reading:
    """``unbound-control stats_noreset`` lines (``total.num.queries=1234``)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, sep, raw = line.strip().partition("=")
        if sep:
            try:
                values[name] = float(raw)
            except ValueError:
                continue
    out: Reading = [(m, values[k], {}) for k, m in UNBOUND.items() if k in values]
    if "total.recursion.time.avg" in values:
        out.append(("dns_unbound_recursion_seconds", values["total.recursion.time.avg"], {}))
    if "total.requestlist.current.all" in values:
        out.append(("dns_unbound_requestlist", values["total.requestlist.current.all"], {}))
    for name, value in values.items():
        if name.startswith("num.answer.rcode."):
            out.append(("dns_unbound_answers_total", value, {"rcode": name.rsplit(".", 1)[1]}))
    return out


def unbound(app: Unbound, timeout: float) -> Reading:
    return parse_unbound(run(app.command, ["stats_noreset"], timeout=timeout).stdout)
