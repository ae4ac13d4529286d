"""The API's own metrics and their Prometheus text exposition (format 0.0.4)."""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable

from unity.schemas.api import LatestValue

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BAD_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metric_name(name: str) -> str:
    cleaned = _BAD_NAME.sub("_", name)
    return cleaned if not cleaned[:1].isdigit() else f"_{cleaned}"


def label_name(name: str) -> str:
    cleaned = _BAD_LABEL.sub("_", name)
    if cleaned[:1].isdigit() or cleaned.startswith("__"):
        cleaned = f"l_{cleaned}"
    return cleaned


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in pairs)
    return f"{{{inner}}}" if inner else ""


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1


class ApiMetrics:
    """Counters kept in memory by one API process."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.durations: dict[tuple[str, str], Histogram] = {}
        self.latest_fallbacks = 0
        self.stream_clients = 0
        self.stream_events = 0
        self.stream_dropped = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        hist = self.durations.get((method, route))
        if hist is None:
            hist = self.durations[(method, route)] = Histogram()
        hist.observe(seconds)

    def render(self) -> list[str]:
        out = [
            "# HELP unity_api_requests_total HTTP requests by route and status.",
            "# TYPE unity_api_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            pairs = (("method", method), ("route", route), ("status", str(status)))
            out.append(f"unity_api_requests_total{_labels(pairs)} {n}")
        out += [
            "# HELP unity_api_request_duration_seconds Time to answer a request.",
            "# TYPE unity_api_request_duration_seconds histogram",
        ]
        for (method, route), hist in sorted(self.durations.items()):
            base = (("method", method), ("route", route))
            cumulative = 0
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), hist.counts, strict=True):
                cumulative += n
                labels = _labels((*base, ("le", bound)))
                out.append(f"unity_api_request_duration_seconds_bucket{labels} {cumulative}")
            out.append(f"unity_api_request_duration_seconds_sum{_labels(base)} {hist.total}")
            out.append(f"unity_api_request_duration_seconds_count{_labels(base)} {hist.count}")
        for name, kind, help_text, value in (
            (
                "latest_fallbacks_total",
                "counter",
                "Latest reads answered by PostgreSQL.",
                self.latest_fallbacks,
            ),
            ("stream_clients", "gauge", "Live stream clients connected.", self.stream_clients),
            (
                "stream_events_total",
                "counter",
                "Live stream events queued to clients.",
                self.stream_events,
            ),
            (
                "stream_dropped_total",
                "counter",
                "Live stream events dropped for slow clients.",
                self.stream_dropped,
            ),
        ):
            out += [
                f"# HELP unity_api_{name} {help_text}",
                f"# TYPE unity_api_{name} {kind}",
                f"unity_api_{name} {value}",
            ]
        return out


def render_latest(values: Iterable[LatestValue]) -> list[str]:
    """Latest values as gauges (counters as counters), one family per metric name."""
    families: dict[str, list[LatestValue]] = {}
    for value in values:
        families.setdefault(metric_name(value.name), []).append(value)
    out: list[str] = []
    for name in sorted(families):
        items = families[name]
        kind = "counter" if all(v.kind == "counter" for v in items) else "gauge"
        out.append(f"# TYPE {name} {kind}")
        for v in items:
            pairs = [("host", v.host), ("plugin", v.plugin)]
            if v.instance:
                pairs.append(("instance", v.instance))
            taken = {"host", "plugin", "instance"}
            pairs += [(label_name(k), x) for k, x in sorted(v.labels.items()) if k not in taken]
            out.append(f"{name}{_labels(pairs)} {v.value!r} {int(v.ts.timestamp() * 1000)}")
    return out
