"""DNS: resolution time and answers per name and server; Pi-hole, AdGuard Home, Unbound stats."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from unity.collectors.command import CommandError
from unity.collectors.plugins.dns.apps import (
    AdGuard,
    PiHole,
    Reading,
    Unbound,
    adguard,
    pihole,
    unbound,
)
from unity.collectors.webapi import WebApiError
from unity.sdk import Health, Metric, Plugin, Sink

EXTRA = "needs the 'dns' extra: pip install 'unity-telemetry[dns]'"


class Query(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    type: str = "A"
    # A server address; empty means the system's resolvers (/etc/resolv.conf).
    server: str = ""
    port: int = 53
    protocol: Literal["udp", "tcp"] = "udp"
    # Answers that must all be present (e.g. ["192.168.1.10"]); empty: any answer.
    expect: list[str] = []
    # The response code that counts as up; "NXDOMAIN" checks that a name is blocked.
    expect_rcode: str = "NOERROR"


class DnsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    queries: list[Query] = []
    pihole: list[PiHole] = []
    adguard: list[AdGuard] = []
    unbound: list[Unbound] = []
    query_timeout: float = 2.0


@dataclass
class Lookup:
    up: bool = False
    seconds: float | None = None
    rcode: str = ""
    answers: list[str] = field(default_factory=list)
    error: str = ""


class DnsPlugin(Plugin):
    id = "dns"
    name = "DNS"
    description = "Resolution time and answers per name and server; Pi-hole, AdGuard, Unbound."
    category = "network"
    Config = DnsConfig
    metrics = (
        Metric("dns_lookup_up", "", "gauge", "1 when the expected rcode and answers came back"),
        Metric("dns_lookup_seconds", "seconds", "gauge", "query sent to answer received"),
        Metric("dns_lookup_answers", "", "gauge", "records of the asked type in the answer"),
        Metric("dns_pihole_queries", "", "gauge", "queries over Pi-hole's last 24 hours"),
        Metric("dns_pihole_blocked", "", "gauge", "blocked queries, last 24 hours"),
        Metric("dns_pihole_blocked_percent", "percent", "gauge", "share blocked, last 24 hours"),
        Metric("dns_pihole_cached", "", "gauge", "queries answered from cache, last 24 hours"),
        Metric("dns_pihole_forwarded", "", "gauge", "queries forwarded upstream, last 24 hours"),
        Metric("dns_pihole_unique_domains", "", "gauge", "distinct domains, last 24 hours"),
        Metric("dns_pihole_clients_active", "", "gauge", "clients seen recently"),
        Metric("dns_pihole_blocklist_domains", "", "gauge", "domains on the gravity list"),
        Metric("dns_pihole_gravity_updated_timestamp", "seconds", "gauge", "last gravity update"),
        Metric("dns_adguard_queries", "", "gauge", "queries in the stats window"),
        Metric("dns_adguard_blocked", "", "gauge", "queries blocked by filters"),
        Metric("dns_adguard_safebrowsing_blocked", "", "gauge", "blocked by safe browsing"),
        Metric("dns_adguard_parental_blocked", "", "gauge", "blocked by parental control"),
        Metric("dns_adguard_processing_seconds", "seconds", "gauge", "average processing time"),
        Metric("dns_unbound_queries_total", "", "counter", "queries received"),
        Metric("dns_unbound_cache_hits_total", "", "counter", "answered from cache"),
        Metric("dns_unbound_cache_misses_total", "", "counter", "needed recursion"),
        Metric("dns_unbound_prefetches_total", "", "counter", "cache prefetches"),
        Metric("dns_unbound_expired_answers_total", "", "counter", "expired records served"),
        Metric(
            "dns_unbound_requestlist_exceeded_total", "", "counter", "queries dropped: list full"
        ),
        Metric("dns_unbound_requestlist", "", "gauge", "queries waiting for recursion"),
        Metric("dns_unbound_recursion_seconds", "seconds", "gauge", "average recursion time"),
        Metric("dns_unbound_answers_total", "", "counter", "answers by response code"),
    )

    config: DnsConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def unavailable(self) -> str | None:
        c = self.config
        if c.queries and importlib.util.find_spec("dns") is None:
            return EXTRA
        if not (c.queries or c.pihole or c.adguard or c.unbound):
            return "no queries or servers configured"
        return None

    def collect(self, sink: Sink) -> None:
        c = self.config
        self._errors = []
        if c.queries and importlib.util.find_spec("dns") is None:
            raise RuntimeError(EXTRA)
        documents = []
        for query in c.queries:
            result = lookup(query, c.query_timeout)
            server = query.server or "system"
            if query.server and query.port != 53:
                server = f"{server}:{query.port}"
            labels = {"name": query.name, "type": query.type.upper(), "server": server}
            sink.add("dns_lookup_up", 1.0 if result.up else 0.0, labels)
            if result.seconds is not None:
                sink.add("dns_lookup_seconds", result.seconds, labels)
                sink.add("dns_lookup_answers", len(result.answers), labels)
            if result.error:
                self._errors.append(f"{query.name} {labels['type']} @{server}: {result.error}")
            documents.append({**labels, "rcode": result.rcode, "answers": result.answers})
        if documents:
            sink.event("dns_answers", f"{len(documents)} lookup(s)", {"lookups": documents})
        apps: list[tuple[str, str, Callable[[], Reading]]] = [
            *(("pihole", p.name or p.url, bind(pihole, p, c.query_timeout)) for p in c.pihole),
            *(("adguard", a.name or a.url, bind(adguard, a, c.query_timeout)) for a in c.adguard),
            *(("unbound", u.name, bind(unbound, u, c.query_timeout)) for u in c.unbound),
        ]
        for kind, label, read in apps:
            try:
                reading = read()
            except (WebApiError, CommandError, AttributeError) as exc:
                self._errors.append(f"{kind} {label}: {exc}")
                continue
            for metric, value, extra in reading:
                sink.add(metric, value, {"server": label, **extra})
        if self._errors and not sink.samples:
            raise RuntimeError("; ".join(self._errors))

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None


def bind(read: Callable[[Any, float], Reading], app: Any, timeout: float) -> Callable[[], Reading]:
    return lambda: read(app, timeout)


def lookup(query: Query, timeout: float) -> Lookup:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import dns.resolver

    result = Lookup()
    try:
        wanted = dns.rdatatype.from_text(query.type)
        started = time.perf_counter()
        if query.server:
            message = dns.message.make_query(query.name, wanted)
            send = dns.query.tcp if query.protocol == "tcp" else dns.query.udp
            response = send(message, query.server, timeout=timeout, port=query.port)
        else:
            resolver = dns.resolver.Resolver()
            answer = resolver.resolve(
                query.name,
                wanted,
                tcp=query.protocol == "tcp",
                lifetime=timeout,
                raise_on_no_answer=False,
            )
            response = answer.response
        result.seconds = time.perf_counter() - started
    except dns.resolver.NXDOMAIN as exc:
        result.seconds = time.perf_counter() - started
        result.rcode = "NXDOMAIN"
        response = exc.response(exc.qnames()[0])  # type: ignore[no-untyped-call]
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    if response is not None:
        result.rcode = dns.rcode.to_text(response.rcode())
        result.answers = sorted(
            rdata.to_text()
            for rrset in response.answer
            if rrset.rdtype == wanted
            for rdata in rrset
        )
    if result.rcode != query.expect_rcode.upper():
        result.error = f"rcode {result.rcode}, expected {query.expect_rcode.upper()}"
    elif query.expect and not set(query.expect) <= set(result.answers):
        missing = sorted(set(query.expect) - set(result.answers))
        result.error = f"answers lack {', '.join(missing)}"
    elif query.expect_rcode.upper() == "NOERROR" and not result.answers:
        result.error = "no answer records"
    result.up = not result.error
    return result
