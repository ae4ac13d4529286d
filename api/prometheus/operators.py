"""Aggregations and binary operators over whole step arrays (Prometheus 2.42 semantics)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from unity.api.prometheus.labels import NAME, Labels
from unity.api.prometheus.values import (
    Floats,
    Mask,
    PromQLError,
    Scalar,
    Series,
    Vector,
    drop_name,
    merged,
    text,
)

ARITHMETIC: dict[str, Callable[[Floats, Floats], Floats]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "%": np.fmod,
    "^": np.power,
}
COMPARISON: dict[str, Callable[[Floats, Floats], Mask]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}
SET = ("and", "or", "unless")
AGGREGATIONS = ("sum", "avg", "min", "max", "count", "group", "topk", "bottomk", "stddev", "stdvar")


def _apply(op: str, left: Floats, right: Floats) -> tuple[Floats, Mask]:
    """The value and, for a comparison, whether it holds."""
    with np.errstate(all="ignore"):
        if op in ARITHMETIC:
            values = np.asarray(ARITHMETIC[op](left, right), dtype=np.float64)
            return values, np.ones(len(values), dtype=bool)
        return np.asarray(left, dtype=np.float64), np.asarray(COMPARISON[op](left, right))


def scalar_scalar(op: str, left: Scalar, right: Scalar, return_bool: bool) -> Scalar:
    values, keep = _apply(op, left.values, right.values)
    if op in COMPARISON:
        if not return_bool:
            raise PromQLError("comparisons between scalars must use BOOL modifier")
        values = keep.astype(np.float64)
    return Scalar(values)


def vector_scalar(
    op: str, vector: Vector, scalar: Scalar, scalar_left: bool, return_bool: bool
) -> Vector:
    if op in SET:
        raise PromQLError(f"set operator {op!r} not allowed in binary scalar expression")
    out: list[Series] = []
    for s in vector.series:
        left, right = (scalar.values, s.values) if scalar_left else (s.values, scalar.values)
        values, keep = _apply(op, left, right)
        if op in COMPARISON:
            # The vector's value is kept, whichever side it is on.
            values = s.values
        present = s.present.copy()
        if return_bool:
            values, labels = keep.astype(np.float64), drop_name(s.labels)
        else:
            present &= keep
            labels = drop_name(s.labels) if op in ARITHMETIC else s.labels
        out.append(Series(labels, values, present))
    return merged(out) if op in ARITHMETIC or return_bool else Vector(out)


class Matching:
    """How two vectors pair up: ``on``/``ignoring`` labels, cardinality and ``group_x`` labels."""

    def __init__(self, on: bool, labels: Sequence[str], card: str, include: Sequence[str]) -> None:
        self.on = on
        self.labels = frozenset(labels)
        self.card = card  # "one-to-one", "many-to-one", "one-to-many", "many-to-many"
        self.include = tuple(include)

    def signature(self, labels: Labels) -> Labels:
        if self.on:
            return tuple(kv for kv in labels if kv[0] in self.labels)
        return tuple(kv for kv in labels if kv[0] not in self.labels and kv[0] != NAME)

    def result(self, many: Labels, one: Labels, drop: bool) -> Labels:
        out = dict(many)
        if drop:
            out.pop(NAME, None)
        if self.card == "one-to-one":
            if self.on:
                out = {k: v for k, v in out.items() if k in self.labels}
            else:
                for k in self.labels:
                    out.pop(k, None)
        ones = dict(one)
        for k in self.include:
            if ones.get(k):
                out[k] = ones[k]
            else:
                out.pop(k, None)
        return tuple(sorted(out.items()))


def _groups(series: list[Series], matching: Matching) -> dict[Labels, list[Series]]:
    groups: dict[Labels, list[Series]] = {}
    for s in series:
        groups.setdefault(matching.signature(s.labels), []).append(s)
    return groups


def _any(series: list[Series], steps: int) -> Mask:
    out = np.zeros(steps, dtype=bool)
    for s in series:
        out |= s.present
    return out


def _set_op(op: str, lhs: Vector, rhs: Vector, matching: Matching, steps: int) -> Vector:
    right = {sig: _any(g, steps) for sig, g in _groups(rhs.series, matching).items()}
    out: list[Series] = []
    if op == "or":
        left = {sig: _any(g, steps) for sig, g in _groups(lhs.series, matching).items()}
        out.extend(lhs.series)
        for s in rhs.series:
            taken = left.get(matching.signature(s.labels))
            present = s.present if taken is None else s.present & ~taken
            out.append(Series(s.labels, s.values, present))
        return merged(out)
    for s in lhs.series:
        found = right.get(matching.signature(s.labels))
        if found is None:
            found = np.zeros(steps, dtype=bool)
        present = s.present & found if op == "and" else s.present & ~found
        out.append(Series(s.labels, s.values, present))
    return Vector(out)


def vector_vector(
    op: str, lhs: Vector, rhs: Vector, matching: Matching, return_bool: bool, steps: int
) -> Vector:
    if op in SET:
        return _set_op(op, lhs, rhs, matching, steps)
    if matching.card == "many-to-many":
        raise PromQLError("many-to-many matching is only allowed for set operators")
    swap = matching.card == "one-to-many"
    many, one = (rhs, lhs) if swap else (lhs, rhs)
    ones = _groups(one.series, matching)
    for sig, group in ones.items():
        if len(group) > 1 and (np.stack([s.present for s in group]).sum(axis=0) > 1).any():
            side = "left" if swap else "right"
            raise PromQLError(
                f"found duplicate series for the match group {text(sig)} on the {side} "
                "hand-side of the operation; many-to-many matching not allowed: matching "
                "labels must be unique on one side",
                "execution",
            )
    if matching.card == "one-to-one":
        for sig, group in _groups(many.series, matching).items():
            partner = ones.get(sig)
            if len(group) > 1 and partner is not None:
                partnered = _any(partner, steps)
                paired = np.stack([s.present & partnered for s in group]).sum(axis=0)
                if (paired > 1).any():
                    raise PromQLError(
                        f"multiple matches for labels {text(sig)}: many-to-one matching must "
                        "be explicit (group_left/group_right)",
                        "execution",
                    )
    drop = op in ARITHMETIC or return_bool
    out: list[Series] = []
    for s in many.series:
        for o in ones.get(matching.signature(s.labels), []):
            left, right = (o, s) if swap else (s, o)
            values, keep = _apply(op, left.values, right.values)
            present = s.present & o.present
            if return_bool:
                values = keep.astype(np.float64)
            else:
                present = present & keep
            out.append(Series(matching.result(s.labels, o.labels, drop), values, present))
    try:
        return merged(out)
    except PromQLError:
        raise PromQLError(
            "multiple matches for labels: grouping labels must ensure unique matches",
            "execution",
        ) from None


def _grouping(labels: Labels, by: bool, names: frozenset[str]) -> Labels:
    if by:
        return tuple(kv for kv in labels if kv[0] in names)
    return tuple(kv for kv in labels if kv[0] not in names and kv[0] != NAME)


def aggregate(
    op: str, vector: Vector, by: bool, names: Sequence[str], param: Scalar | None, steps: int
) -> Vector:
    wanted = frozenset(names)
    groups: dict[Labels, list[Series]] = {}
    for s in vector.series:
        groups.setdefault(_grouping(s.labels, by, wanted), []).append(s)
    out: list[Series] = []
    for labels, group in groups.items():
        present = np.stack([s.present for s in group])
        values = np.stack([s.values for s in group])
        if op in ("topk", "bottomk"):
            assert param is not None
            out.extend(_top(op, group, values, present, param.values))
            continue
        count = present.sum(axis=0)
        anything = count > 0
        zeroed = np.where(present, values, 0.0)
        with np.errstate(all="ignore"):
            if op == "sum":
                result = zeroed.sum(axis=0)
            elif op == "avg":
                result = zeroed.sum(axis=0) / count
            elif op == "count":
                result = count.astype(np.float64)
            elif op == "group":
                result = np.ones(steps)
            elif op in ("min", "max"):
                result = _extreme(op, values, present)
            else:
                mean = zeroed.sum(axis=0) / count
                dev = np.where(present, values - mean, 0.0)
                result = (dev * dev).sum(axis=0) / count
                if op == "stddev":
                    result = np.sqrt(result)
        out.append(Series(labels, np.asarray(result, dtype=np.float64), anything))
    return Vector(out)


def _extreme(op: str, values: Floats, present: Mask) -> Floats:
    """Prometheus's min/max: a NaN is replaced by any number, and kept only when all are NaN."""
    fill = math.inf if op == "min" else -math.inf
    usable = present & ~np.isnan(values)
    picked = np.where(usable, values, fill)
    result: Floats = picked.min(axis=0) if op == "min" else picked.max(axis=0)
    return np.where(usable.any(axis=0), result, math.nan)


def _top(op: str, group: list[Series], values: Floats, present: Mask, k: Floats) -> list[Series]:
    # Rank within each step: absent series sort last, NaN after every number.
    key = -values if op == "topk" else values.copy()
    key = np.where(np.isnan(key), math.inf, key)
    key = np.where(present, key, math.inf)
    order = np.argsort(key, axis=0, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(len(group))[:, None].repeat(values.shape[1], 1), 0)
    keep = present & (rank < np.floor(k)[None, :])
    return [Series(s.labels, s.values, keep[i]) for i, s in enumerate(group)]


def histogram_quantile(q: Scalar, vector: Vector, steps: int) -> Vector:
    groups: dict[Labels, list[tuple[float, Series]]] = {}
    for s in vector.series:
        named = dict(s.labels)
        le = named.pop("le", None)
        if le is None:
            continue
        try:
            bound = float(le)
        except ValueError:
            continue
        named.pop(NAME, None)
        groups.setdefault(tuple(sorted(named.items())), []).append((bound, s))
    out: list[Series] = []
    for labels, buckets in groups.items():
        buckets.sort(key=lambda b: b[0])
        values = np.zeros(steps)
        present = np.zeros(steps, dtype=bool)
        for i in range(steps):
            here = [(b, float(s.values[i])) for b, s in buckets if s.present[i]]
            if here:
                values[i] = _bucket_quantile(float(q.values[i]), here)
                present[i] = True
        out.append(Series(labels, values, present))
    return Vector(out)


def _bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if not math.isinf(buckets[-1][0]):
        return math.nan
    merged_buckets: list[list[float]] = []
    for bound, count in buckets:
        if merged_buckets and merged_buckets[-1][0] == bound:
            merged_buckets[-1][1] += count
        else:
            merged_buckets.append([bound, count])
    highest = -math.inf
    for bucket in merged_buckets:
        highest = bucket[1] = max(highest, bucket[1])
    if len(merged_buckets) < 2:
        return math.nan
    observations = merged_buckets[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next(
        (i for i in range(len(merged_buckets) - 1) if merged_buckets[i][1] >= rank),
        len(merged_buckets) - 1,
    )
    if b == len(merged_buckets) - 1:
        return merged_buckets[-2][0]
    if b == 0 and merged_buckets[0][0] <= 0:
        return merged_buckets[0][0]
    start, end, count = 0.0, merged_buckets[b][0], merged_buckets[b][1]
    if b > 0:
        start = merged_buckets[b - 1][0]
        count -= merged_buckets[b - 1][1]
        rank -= merged_buckets[b - 1][1]
    return start + (end - start) * (rank / count)
