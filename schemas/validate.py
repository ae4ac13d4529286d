"""Semantic limits on decoded messages, beyond what the types enforce.

Every limit has a reason code (short snake_case). Codes name the DLQ subject a rejected message
goes to (``unity.dlq.<reason>``) and its ``Unity-Reason`` header, so they are part of the
contract: they only grow.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from unity.schemas.wire import Event, HealthReport, MetricBatch, Sample

__all__ = [
    "MAX_FUTURE_S",
    "MAX_HOST_LEN",
    "MAX_INSTANCE_LEN",
    "MAX_LABELS",
    "MAX_LABEL_VALUE_LEN",
    "MAX_NAME_LEN",
    "MAX_PAYLOAD_BYTES",
    "MAX_PLUGIN_LEN",
    "MAX_SAMPLES",
    "MAX_UNIT_LEN",
    "NAME_RE",
    "REASONS",
    "Rejection",
    "check_message",
    "check_name",
    "check_sample",
    "check_source",
    "check_ts",
    "epoch",
    "split_batch",
    "token",
]

MAX_PAYLOAD_BYTES: Final = 1_000_000
"""Largest encoded message. Just under nats-server's default ``max_payload`` (1 MiB), so a producer
that gets past the server still gets a reason; it matters most where ``max_payload`` is raised."""
MAX_SAMPLES: Final = 10_000
"""Samples in one batch."""
MAX_NAME_LEN: Final = 200
"""Characters in a metric name, a label name or an event kind."""
MAX_LABELS: Final = 32
"""Labels on one sample."""
MAX_LABEL_VALUE_LEN: Final = 256
"""Characters in one label value."""
MAX_FUTURE_S: Final = 300.0
"""How far past the receiver's clock a timestamp may be (clock skew allowance)."""
MAX_HOST_LEN: Final = 253
"""Characters in a host, after sanitising into a subject token: the longest DNS name."""
MAX_PLUGIN_LEN: Final = 64
"""Characters in a plugin id, after sanitising into a subject token."""
MAX_INSTANCE_LEN: Final = 128
"""Characters in an instance name, after sanitising into a subject token (its KV key)."""
MAX_UNIT_LEN: Final = 64
"""Characters in a sample's unit."""

NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
TOKEN_RE: Final = re.compile(r"[^A-Za-z0-9_-]")

# Names and label keys that passed check_name. They repeat in every batch, so the regex runs
# once per distinct string; bounded by clearing it when full (a flood of distinct names only
# costs the regex again).
_KNOWN_NAMES_MAX: Final = 50_000
_known_names: set[str] = set()

REASONS: Final = {
    "too_large": f"the encoded message is over {MAX_PAYLOAD_BYTES} bytes",
    "malformed": "the bytes are not JSON (or MessagePack when the Content-Type says so)",
    "invalid": "a field is missing or has the wrong type",
    "unsupported_content_type": "the Content-Type header is neither JSON nor MessagePack",
    "too_many_samples": f"a batch has more than {MAX_SAMPLES} samples",
    "bad_name": "a metric name or event kind is outside [A-Za-z_][A-Za-z0-9_.:-]*",
    "name_too_long": f"a metric name or event kind is over {MAX_NAME_LEN} characters",
    "too_many_labels": f"a sample has more than {MAX_LABELS} labels",
    "bad_label_name": f"a label name is outside the name alphabet or over {MAX_NAME_LEN} chars",
    "label_value_too_long": f"a label value is over {MAX_LABEL_VALUE_LEN} characters",
    "non_finite": "a value is NaN or infinite",
    "ts_in_future": f"a timestamp is more than {MAX_FUTURE_S:.0f} s ahead of the receiver",
    "ts_before_epoch": "a timestamp is before 1970-01-01",
    "bad_samples": "a batch has rejected samples of more than one reason",
    "host_too_long": f"a host is over {MAX_HOST_LEN} characters once sanitised",
    "plugin_too_long": f"a plugin id is over {MAX_PLUGIN_LEN} characters once sanitised",
    "instance_too_long": f"an instance is over {MAX_INSTANCE_LEN} characters once sanitised",
    "unit_too_long": f"a unit is over {MAX_UNIT_LEN} characters",
}
"""Every reason code a message or sample can be rejected with, and what it means."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one sample of a batch (``index`` -1: the whole batch) was refused."""

    index: int
    reason: str
    message: str


def token(value: str) -> str:
    """Sanitise a host or plugin name into a NATS subject token ``[A-Za-z0-9_-]``."""
    cleaned = TOKEN_RE.sub("_", value.strip())
    return cleaned or "_"


def epoch(ts: datetime | float) -> float:
    """Seconds since the epoch for either timestamp form."""
    return ts.timestamp() if isinstance(ts, datetime) else float(ts)


def check_name(name: str, what: str = "name") -> tuple[str, str] | None:
    """Return ``(reason, message)`` when ``name`` breaks the name rules, else None."""
    if name in _known_names:
        return None
    if len(name) > MAX_NAME_LEN:
        return "name_too_long", f"{what} is {len(name)} characters, the limit is {MAX_NAME_LEN}"
    if not NAME_RE.fullmatch(name):
        return "bad_name", f"{what} {name!r} is outside [A-Za-z_][A-Za-z0-9_.:-]*"
    if len(_known_names) >= _KNOWN_NAMES_MAX:
        _known_names.clear()
    _known_names.add(name)
    return None


def check_source(host: str, plugin: str, instance: str) -> tuple[str, str] | None:
    """Return ``(reason, message)`` when a host, plugin or instance is too long, else None.

    Lengths count after :func:`token`: any alphabet and case is fine, it is sanitised.
    """
    for what, value, limit in (
        ("host", host, MAX_HOST_LEN),
        ("plugin", plugin, MAX_PLUGIN_LEN),
        ("instance", instance, MAX_INSTANCE_LEN),
    ):
        length = len(token(value))
        if length > limit:
            return f"{what}_too_long", f"{what} is {length} characters, the limit is {limit}"
    return None


def check_ts(ts: datetime | float, now: float | None = None) -> tuple[str, str] | None:
    """Return ``(reason, message)`` when ``ts`` is before 1970 or too far ahead, else None."""
    value = epoch(ts)
    if not math.isfinite(value):
        return "non_finite", f"timestamp {value} is not finite"
    if value < 0:
        return "ts_before_epoch", f"timestamp {value:.3f} is before 1970-01-01"
    ahead = value - (time.time() if now is None else now)
    if ahead > MAX_FUTURE_S:
        return "ts_in_future", f"timestamp {value:.3f} is {ahead:.0f} s ahead of the receiver"
    return None


def check_sample(
    sample: Sample, default_ts: float, now: float | None = None
) -> tuple[str, str] | None:
    """Return ``(reason, message)`` when ``sample`` breaks a limit, or None when it is fine."""
    problem = check_name(sample.name)
    if problem is not None:
        return problem
    if not math.isfinite(sample.value):
        return "non_finite", f"value {sample.value} is not finite"
    if len(sample.unit) > MAX_UNIT_LEN:
        return (
            "unit_too_long",
            f"unit is {len(sample.unit)} characters, the limit is {MAX_UNIT_LEN}",
        )
    if len(sample.labels) > MAX_LABELS:
        return "too_many_labels", f"{len(sample.labels)} labels, the limit is {MAX_LABELS}"
    for key, value in sample.labels.items():
        if check_name(key) is not None:
            return "bad_label_name", f"label name {key[:MAX_NAME_LEN]!r} is not allowed"
        if len(value) > MAX_LABEL_VALUE_LEN:
            return (
                "label_value_too_long",
                f"label {key!r} is {len(value)} characters, the limit is {MAX_LABEL_VALUE_LEN}",
            )
    return check_ts(default_ts if sample.ts is None else sample.ts, now)


def split_batch(
    batch: MetricBatch, default_ts: float, now: float | None = None
) -> tuple[list[tuple[Sample, float]], list[Rejection]]:
    """Split a batch into accepted ``(sample, epoch_ts)`` pairs and rejections.

    A problem with the batch itself (too many samples, a host, plugin or instance too long, a
    bad batch timestamp) rejects it whole with index -1; otherwise each bad sample is rejected
    on its own and the rest are kept.
    """
    if len(batch.samples) > MAX_SAMPLES:
        reason = f"batch has {len(batch.samples)} samples, the limit is {MAX_SAMPLES}"
        return [], [Rejection(-1, "too_many_samples", reason)]
    problem = check_source(batch.host, batch.plugin, batch.instance)
    if problem is not None:
        return [], [Rejection(-1, problem[0], f"batch: {problem[1]}")]
    if now is None:
        now = time.time()
    if batch.ts is not None:
        problem = check_ts(batch.ts, now)
        if problem is not None:
            return [], [Rejection(-1, problem[0], f"batch ts: {problem[1]}")]
    # The hot path: a sample whose names are all known good and whose numbers are in range is
    # accepted by a few comparisons that accept exactly what check_sample accepts (same
    # expressions, NaN failing every one); anything else goes through check_sample for its
    # reason.
    known = _known_names
    isfinite = math.isfinite
    default_ok = default_ts >= 0 and default_ts - now <= MAX_FUTURE_S
    good: list[tuple[Sample, float]] = []
    bad: list[Rejection] = []
    for i, sample in enumerate(batch.samples):
        ts = sample.ts
        if ts is None:
            value, ts_ok = default_ts, default_ok
        else:
            value = ts.timestamp() if isinstance(ts, datetime) else float(ts)
            ts_ok = value >= 0 and value - now <= MAX_FUTURE_S
        labels = sample.labels
        if (
            ts_ok
            and sample.name in known
            and isfinite(sample.value)
            and len(sample.unit) <= MAX_UNIT_LEN
            and len(labels) <= MAX_LABELS
        ):
            for key, label in labels.items():
                if key not in known or len(label) > MAX_LABEL_VALUE_LEN:
                    break
            else:
                good.append((sample, value))
                continue
        problem = check_sample(sample, default_ts, now)
        if problem is None:
            good.append((sample, value))
        else:
            reason, detail = problem
            bad.append(Rejection(i, reason, f"sample {i} ({sample.name[:60]!r}): {detail}"))
    return good, bad


def check_message(msg: HealthReport | Event, now: float | None = None) -> tuple[str, str] | None:
    """Return ``(reason, message)`` when a health report or event breaks a limit, else None."""
    problem = check_source(msg.host, msg.plugin, msg.instance)
    if problem is not None:
        return problem
    if isinstance(msg, Event):
        problem = check_name(msg.kind, "event kind")
        if problem is not None:
            return problem
    if isinstance(msg, HealthReport) and not math.isfinite(msg.duration_ms):
        return "non_finite", f"duration_ms {msg.duration_ms} is not finite"
    return None if msg.ts is None else check_ts(msg.ts, now)
