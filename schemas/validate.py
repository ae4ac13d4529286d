"""Semantic limits on decoded messages, beyond what the types enforce."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime

from schemas.wire import MetricBatch, Sample

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")
TOKEN_RE = re.compile(r"[^A-Za-z0-9_-]")
MAX_SAMPLES = 10_000
MAX_LABELS = 32
MAX_LABEL_LEN = 256
MAX_FUTURE_S = 300.0


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one sample of a batch was refused."""

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


def check_sample(sample: Sample, default_ts: float, now: float | None = None) -> str | None:
    """Return a rejection reason code for ``sample``, or None when it is acceptable."""
    if not NAME_RE.match(sample.name):
        return "bad_name"
    if not math.isfinite(sample.value):
        return "non_finite"
    if len(sample.labels) > MAX_LABELS:
        return "too_many_labels"
    for key, value in sample.labels.items():
        if not NAME_RE.match(key) or len(value) > MAX_LABEL_LEN:
            return "bad_label"
    ts = default_ts if sample.ts is None else epoch(sample.ts)
    if ts < 0:
        return "ts_before_epoch"
    if ts > (time.time() if now is None else now) + MAX_FUTURE_S:
        return "ts_in_future"
    return None


def split_batch(
    batch: MetricBatch, default_ts: float, now: float | None = None
) -> tuple[list[tuple[Sample, float]], list[Rejection]]:
    """Split a batch into accepted ``(sample, epoch_ts)`` pairs and rejections."""
    if len(batch.samples) > MAX_SAMPLES:
        reason = f"batch has {len(batch.samples)} samples, the limit is {MAX_SAMPLES}"
        return [], [Rejection(-1, "too_many_samples", reason)]
    good: list[tuple[Sample, float]] = []
    bad: list[Rejection] = []
    for i, sample in enumerate(batch.samples):
        problem = check_sample(sample, default_ts, now)
        if problem is None:
            good.append((sample, default_ts if sample.ts is None else epoch(sample.ts)))
        else:
            bad.append(Rejection(i, problem, f"sample {i} ({sample.name!r}): {problem}"))
    return good, bad
