"""PromQL evaluation: the kept parser's syntax tree, walked once for all steps of a query.

Selectors read their samples from PostgreSQL (``storage``); functions and operators then work
on whole step arrays. What Unity does not evaluate is refused with a message naming it, never
answered approximately.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import numpy as np
import promql_parser as pp

from unity.api.prometheus import functions, operators, rollups, storage
from unity.api.prometheus.labels import NAME, Matcher
from unity.api.prometheus.storage import Raw, Times
from unity.api.prometheus.values import PromQLError, Scalar, Series, String, Value, Vector, merged

LOOKBACK_MS = 5 * 60 * 1000
MAX_STEPS = 11_000
# The parser's enums cannot be hashed: they are looked up by their names.
_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}
_CARDS = {
    "OneToOne": "one-to-one",
    "ManyToOne": "many-to-one",
    "OneToMany": "one-to-many",
    "ManyToMany": "many-to-many",
}
INSTANT_FUNCTIONS = frozenset({*functions.ELEMENTWISE, "round", "clamp", "clamp_min", "clamp_max"})


def parse(query: str) -> Any:
    try:
        return pp.parse(query)
    except ValueError as exc:
        raise PromQLError(f'invalid parameter "query": {exc}') from None


def _name(member: Any) -> str:
    return str(member).rsplit(".", 1)[-1]


def _ms(delta: Any) -> int:
    return 0 if delta is None else round(delta.total_seconds() * 1000)


def selector_matchers(vs: Any) -> list[Matcher]:
    """The matchers of a parsed selector, its metric name first."""
    if vs.at is not None:
        raise PromQLError("the @ modifier is not supported by Unity's PromQL")
    if vs.matchers.or_matchers:
        raise PromQLError("'or' inside a selector's braces is not supported by Unity's PromQL")
    out = [Matcher(NAME, "=", vs.name)] if vs.name else []
    out += [Matcher(m.name, _OPS[_name(m.op)], m.value) for m in vs.matchers.matchers]
    return out


class Engine:
    """Evaluates at ``start, start + step, ... <= end`` (milliseconds; one step when equal)."""

    def __init__(self, conn: asyncpg.Connection, start_ms: int, end_ms: int, step_ms: int) -> None:
        if step_ms <= 0:
            self.times: Times = np.array([start_ms], dtype=np.int64)
        else:
            count = (end_ms - start_ms) // step_ms + 1
            if count > MAX_STEPS:
                raise PromQLError(
                    f"exceeded maximum resolution of {MAX_STEPS} points per timeseries. "
                    "Try decreasing the query resolution (?step=XX)"
                )
            self.times = start_ms + step_ms * np.arange(count, dtype=np.int64)
        self.conn = conn
        self.steps = len(self.times)

    async def evaluate(self, expr: Any) -> Value:
        if isinstance(expr, pp.NumberLiteral):
            return Scalar(np.full(self.steps, float(expr.val)))
        if isinstance(expr, pp.StringLiteral):
            return String(str(expr.val))
        if isinstance(expr, pp.ParenExpr):
            return await self.evaluate(expr.expr)
        if isinstance(expr, pp.UnaryExpr):
            return self._negate(await self.evaluate(expr.expr))
        if isinstance(expr, pp.VectorSelector):
            return await self._instant(expr)
        if isinstance(expr, pp.MatrixSelector):
            raise PromQLError("a range vector is only the answer of an instant query")
        if isinstance(expr, pp.SubqueryExpr):
            raise PromQLError("subqueries are not supported by Unity's PromQL")
        if isinstance(expr, pp.AggregateExpr):
            return await self._aggregate(expr)
        if isinstance(expr, pp.Call):
            return await self._call(expr)
        if isinstance(expr, pp.BinaryExpr):
            return await self._binary(expr)
        raise PromQLError(f"{type(expr).__name__} expressions are not supported")

    async def matrix(self, expr: Any) -> list[Raw]:
        """The samples a top-level range selector selects (an instant query's matrix)."""
        vs = expr.vector_selector
        ref = self.times - _ms(vs.offset)
        return await storage.samples(self.conn, selector_matchers(vs), ref, _ms(expr.range))

    def _negate(self, value: Value) -> Value:
        if isinstance(value, Scalar):
            return Scalar(-value.values)
        if isinstance(value, Vector):
            return merged(
                [
                    Series(tuple(kv for kv in s.labels if kv[0] != NAME), -s.values, s.present)
                    for s in value.series
                ]
            )
        raise PromQLError("unary minus needs a number or an instant vector")

    async def _instant(self, vs: Any) -> Vector:
        ref = self.times - _ms(vs.offset)
        raws = await storage.samples(self.conn, selector_matchers(vs), ref, LOOKBACK_MS)
        out: list[Series] = []
        for raw in raws:
            idx = np.searchsorted(raw.times, ref, "right") - 1
            safe = np.maximum(idx, 0)
            present = (idx >= 0) & (raw.times[safe] >= ref - LOOKBACK_MS)
            out.append(Series(raw.labels, raw.values[safe], present))
        return Vector(out)

    async def _vector(self, expr: Any, what: str) -> Vector:
        value = await self.evaluate(expr)
        if not isinstance(value, Vector):
            raise PromQLError(f"{what} needs an instant vector")
        return value

    async def _scalar(self, expr: Any, what: str) -> Scalar:
        value = await self.evaluate(expr)
        if not isinstance(value, Scalar):
            raise PromQLError(f"{what} needs a number")
        return value

    async def _aggregate(self, expr: Any) -> Vector:
        op = str(expr.op)
        if op not in operators.AGGREGATIONS:
            raise PromQLError(f"aggregation {op!r} is not supported by Unity's PromQL")
        param = None
        if op in ("topk", "bottomk"):
            param = await self._scalar(expr.param, op)
        vector = await self._vector(expr.expr, op)
        modifier = expr.modifier
        by = modifier is None or modifier.type == pp.AggModifierType.By
        names = [] if modifier is None else list(modifier.labels)
        return operators.aggregate(op, vector, by, names, param, self.steps)

    async def _call(self, expr: Any) -> Value:
        name = str(expr.func.name)
        args = list(expr.args)
        if name in functions.RANGE_FUNCTIONS:
            q = 0.0
            if name == "quantile_over_time":
                phi = await self._scalar(args[0], name)
                q = float(phi.values[0])
                args = args[1:]
            if not isinstance(args[0], pp.MatrixSelector):
                raise PromQLError(f"{name}() over a subquery is not supported by Unity's PromQL")
            vs = args[0].vector_selector
            ref = self.times - _ms(vs.offset)
            range_ms = _ms(args[0].range)
            width = rollups.width_for(name, ref, range_ms)
            if width is not None:
                found = await rollups.over_time(
                    self.conn, name, selector_matchers(vs), ref, range_ms, width
                )
                return merged(found)
            raws = await storage.samples(self.conn, selector_matchers(vs), ref, range_ms)
            return merged(functions.over_range(name, raws, ref, range_ms, q))
        if name in INSTANT_FUNCTIONS:
            vector = await self._vector(args[0], name)
            extra = [(await self._scalar(a, name)).values for a in args[1:]]
            return merged(functions.elementwise(name, vector.series, extra))
        if name == "time":
            return Scalar(self.times / 1000.0)
        if name == "vector":
            scalar = await self._scalar(args[0], name)
            return Vector([Series((), scalar.values, np.ones(self.steps, dtype=bool))])
        if name == "scalar":
            vector = await self._vector(args[0], name)
            count = sum(s.present.astype(np.int64) for s in vector.series)
            values = np.full(self.steps, np.nan)
            for s in vector.series:
                values = np.where(s.present & (count == 1), s.values, values)
            return Scalar(values)
        if name == "histogram_quantile":
            phi = await self._scalar(args[0], name)
            vector = await self._vector(args[1], name)
            return merged(operators.histogram_quantile(phi, vector, self.steps).series)
        raise PromQLError(f"function {name!r} is not supported by Unity's PromQL")

    async def _binary(self, expr: Any) -> Value:
        op = str(expr.op)
        modifier = expr.modifier
        return_bool = bool(modifier is not None and modifier.return_bool)
        if modifier is not None and (
            modifier.fill_values.lhs is not None or modifier.fill_values.rhs is not None
        ):
            raise PromQLError("fill() modifiers are not supported by Unity's PromQL")
        lhs = await self.evaluate(expr.lhs)
        rhs = await self.evaluate(expr.rhs)
        if isinstance(lhs, String) or isinstance(rhs, String):
            raise PromQLError(f"operator {op!r} cannot take a string")
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return operators.scalar_scalar(op, lhs, rhs, return_bool)
        if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
            return operators.vector_scalar(op, lhs, rhs, False, return_bool)
        if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
            return operators.vector_scalar(op, rhs, lhs, True, return_bool)
        assert isinstance(lhs, Vector) and isinstance(rhs, Vector)
        matching = modifier.matching if modifier is not None else None
        card = _CARDS[_name(modifier.card)] if modifier is not None else "one-to-one"
        if op in operators.SET:
            card = "many-to-many"
        on = matching is not None and matching.type == pp.LabelModifierType.Include
        labels = list(matching.labels) if matching is not None else []
        include = list(modifier.group_labels or []) if modifier is not None else []
        match = operators.Matching(on, labels, card, include)
        return operators.vector_vector(op, lhs, rhs, match, return_bool, self.steps)
