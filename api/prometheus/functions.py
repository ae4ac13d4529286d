"""PromQL functions, each computed for every step at once from sorted sample arrays.

Window bounds come from two binary searches per step; sums, counts, counter resets and value
changes from prefix sums; minima and maxima from a sparse table, so no function walks its
window sample by sample except ``quantile_over_time``. The arithmetic follows Prometheus 2.42
(``promql/functions.go``): windows ``[t - range, t]`` closed at both ends, the extrapolation of
``rate``/``increase``/``delta``, population variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from unity.api.prometheus.labels import Labels
from unity.api.prometheus.storage import Raw, Times
from unity.api.prometheus.values import Floats, Mask, PromQLError, Series, drop_name


class Window:
    """The samples of one series that each step's window ``[ref - range, ref]`` holds (with
    ``closed`` false, ``[ref - range, ref)``: rollup buckets that start before ``ref``)."""

    def __init__(self, raw: Raw, ref: Times, range_ms: int, closed: bool = True) -> None:
        self.t = raw.times
        self.v = raw.values
        self.ref = ref
        self.range_ms = range_ms
        self.lo = np.searchsorted(self.t, ref - range_ms, "left")
        self.hi = np.searchsorted(self.t, ref, "right" if closed else "left")
        self.n = self.hi - self.lo
        size = max(len(self.t) - 1, 0)
        self.first = np.minimum(self.lo, size)
        self.last = np.maximum(self.hi - 1, 0)

    def prefix(self, x: Floats) -> Floats:
        """Sum of ``x`` over each window."""
        cs = np.concatenate(([0.0], np.cumsum(x)))
        out: Floats = cs[self.hi] - cs[self.lo]
        return out

    def pairs(self, x: Floats) -> Floats:
        """Sum of ``x[i]`` for the samples after the first of each window (``x[i]`` describing
        the pair ``i - 1, i``)."""
        cs = np.concatenate(([0.0], np.cumsum(x)))
        out: Floats = cs[self.hi] - cs[np.minimum(self.lo + 1, self.hi)]
        return out

    def extreme(self, pick: Callable[[Floats, Floats], Floats]) -> Floats:
        """``pick`` (np.minimum or np.maximum) over each window, from a sparse table."""
        v = self.v
        if len(v) == 0:
            return np.zeros(len(self.ref))
        levels = [v]
        while (1 << len(levels)) <= len(v):
            prev, half = levels[-1], 1 << (len(levels) - 1)
            levels.append(pick(prev[:-half], prev[half:]))
        n = np.maximum(self.n, 1)
        k = np.floor(np.log2(n)).astype(np.int64)
        out = np.empty(len(self.ref))
        for level in np.unique(k):
            sel = k == level
            table = levels[level]
            lo = np.minimum(self.lo[sel], len(table) - 1)
            hi = np.clip(self.hi[sel] - (1 << level), 0, len(table) - 1)
            out[sel] = pick(table[lo], table[hi])
        return out


def _counter_corrections(v: Floats) -> Floats:
    out = np.zeros(len(v))
    if len(v) > 1:
        out[1:] = np.where(v[1:] < v[:-1], v[:-1], 0.0)
    return out


def _extrapolated(w: Window, counter: bool, is_rate: bool) -> tuple[Floats, Mask]:
    ok = w.n >= 2
    t, v = w.t, w.v
    if len(t) == 0:
        return np.zeros(len(w.ref)), ok
    first_v, last_v = v[w.first], v[w.last]
    first_t, last_t = t[w.first], t[w.last]
    result = last_v - first_v
    if counter:
        result = result + w.pairs(_counter_corrections(v))
    to_start = (first_t - (w.ref - w.range_ms)) / 1000.0
    to_end = (w.ref - last_t) / 1000.0
    sampled = (last_t - first_t) / 1000.0
    with np.errstate(all="ignore"):
        average = sampled / np.maximum(w.n - 1, 1)
        if counter:
            to_zero = sampled * (first_v / result)
            to_start = np.where(
                (result > 0) & (first_v >= 0) & (to_zero < to_start), to_zero, to_start
            )
        threshold = average * 1.1
        interval = (
            sampled
            + np.where(to_start < threshold, to_start, average / 2)
            + np.where(to_end < threshold, to_end, average / 2)
        )
        result = result * (interval / sampled)
        if is_rate:
            result = result / (w.range_ms / 1000.0)
    return result, ok


def _instant(w: Window, is_rate: bool) -> tuple[Floats, Mask]:
    ok = w.n >= 2
    if len(w.t) < 2:
        return np.zeros(len(w.ref)), ok
    last = np.maximum(w.hi - 1, 1)
    prev = last - 1
    lv, pv = w.v[last], w.v[prev]
    if not is_rate:
        return lv - pv, ok
    result = np.where(lv < pv, lv, lv - pv)
    return result / ((w.t[last] - w.t[prev]) / 1000.0), ok


def _changes(w: Window, resets: bool) -> tuple[Floats, Mask]:
    v = w.v
    flags = np.zeros(len(v))
    if len(v) > 1:
        if resets:
            flags[1:] = v[1:] < v[:-1]
        else:
            same = (v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1]))
            flags[1:] = ~same
    return w.pairs(flags), w.n >= 1


def _variance(w: Window) -> tuple[Floats, Mask]:
    ok = w.n >= 1
    if len(w.v) == 0:
        return np.zeros(len(w.ref)), ok
    # Shifted sums keep the cancellation small; the mean is exact enough for the shift.
    x = w.v - float(np.mean(w.v))
    n = np.maximum(w.n, 1).astype(np.float64)
    mean = w.prefix(x) / n
    return np.maximum(w.prefix(x * x) / n - mean * mean, 0.0), ok


def _quantile(w: Window, q: float) -> tuple[Floats, Mask]:
    out = np.zeros(len(w.ref))
    for i, (lo, hi) in enumerate(zip(w.lo.tolist(), w.hi.tolist(), strict=True)):
        if hi > lo:
            out[i] = quantile(q, w.v[lo:hi])
    return out, w.n >= 1


def quantile(q: float, values: Floats) -> float:
    """Prometheus's quantile: linear between the closest ranks."""
    if len(values) == 0 or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = np.sort(values)
    rank = q * (len(ordered) - 1)
    lower = max(0, math.floor(rank))
    upper = min(len(ordered) - 1, lower + 1)
    weight = rank - math.floor(rank)
    return float(ordered[lower] * (1 - weight) + ordered[upper] * weight)


def _over(w: Window, kind: str) -> tuple[Floats, Mask]:
    ok = w.n >= 1
    if len(w.v) == 0:
        return np.zeros(len(w.ref)), ok
    n = np.maximum(w.n, 1).astype(np.float64)
    if kind == "sum":
        return w.prefix(w.v), ok
    if kind == "avg":
        return w.prefix(w.v) / n, ok
    if kind == "count":
        return w.n.astype(np.float64), ok
    if kind == "last":
        return w.v[w.last], ok
    if kind == "present":
        return np.ones(len(w.ref)), ok
    return w.extreme(np.minimum if kind == "min" else np.maximum), ok


def _stddev(w: Window) -> tuple[Floats, Mask]:
    variance, ok = _variance(w)
    return np.sqrt(variance), ok


Compute = Callable[[Window, float], tuple[Floats, Mask]]
RANGE_FUNCTIONS: dict[str, Compute] = {
    "rate": lambda w, _: _extrapolated(w, True, True),
    "increase": lambda w, _: _extrapolated(w, True, False),
    "delta": lambda w, _: _extrapolated(w, False, False),
    "irate": lambda w, _: _instant(w, True),
    "idelta": lambda w, _: _instant(w, False),
    "changes": lambda w, _: _changes(w, False),
    "resets": lambda w, _: _changes(w, True),
    "avg_over_time": lambda w, _: _over(w, "avg"),
    "sum_over_time": lambda w, _: _over(w, "sum"),
    "count_over_time": lambda w, _: _over(w, "count"),
    "min_over_time": lambda w, _: _over(w, "min"),
    "max_over_time": lambda w, _: _over(w, "max"),
    "last_over_time": lambda w, _: _over(w, "last"),
    "present_over_time": lambda w, _: _over(w, "present"),
    "stdvar_over_time": lambda w, _: _variance(w),
    "stddev_over_time": lambda w, _: _stddev(w),
    "quantile_over_time": _quantile,
}


def over_range(name: str, raws: list[Raw], ref: Times, range_ms: int, q: float) -> list[Series]:
    """A range-vector function of each selected series."""
    compute = RANGE_FUNCTIONS[name]
    out: list[Series] = []
    for raw in raws:
        values, present = compute(Window(raw, ref, range_ms), q)
        # last_over_time is the one range function that keeps the metric name in 2.42.
        labels: Labels = raw.labels if name == "last_over_time" else drop_name(raw.labels)
        out.append(Series(labels, np.asarray(values, dtype=np.float64), present))
    return out


def _round(v: Floats, to: Floats) -> Floats:
    inverse = 1.0 / to
    out: Floats = np.floor(v * inverse + 0.5) / inverse
    return out


ELEMENTWISE: dict[str, Callable[[Floats], Floats]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sgn": np.sign,
}


def elementwise(name: str, series: list[Series], args: list[Floats]) -> list[Series]:
    """``abs``, ``round``, ``clamp`` and the other functions of one instant vector."""
    out: list[Series] = []
    for s in series:
        present = s.present
        with np.errstate(all="ignore"):
            if name in ELEMENTWISE:
                values = ELEMENTWISE[name](s.values)
            elif name == "round":
                values = _round(s.values, args[0] if args else np.ones(len(s.values)))
            elif name == "clamp_min":
                values = np.maximum(s.values, args[0])
            elif name == "clamp_max":
                values = np.minimum(s.values, args[0])
            elif name == "clamp":
                lo, hi = args
                values = np.maximum(lo, np.minimum(hi, s.values))
                # clamp with min > max returns no series at that step.
                present = present & ~(lo > hi)
            else:
                raise PromQLError(f"function {name!r} is not supported")
        out.append(Series(drop_name(s.labels), values, present))
    return out
