"""Prometheus-style series selectors: ``name{label="x", host=~"nas.*", plugin!="y"}``.

``host``, ``plugin``, ``instance`` and ``name`` (also ``__name__``) match series columns; any
other key matches a label, and a missing label equals the empty string, as in Prometheus.
Regexes match the whole value. Compiled to SQL with every value a bind parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from unity.api.errors import ApiError
from unity.schemas.alerts import Matcher, RuleError, parse_selector

COLUMNS = ("host", "plugin", "instance", "name")
MAX_SELECTOR = 2000
MAX_MATCHERS = 32


class SelectorError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_selector", message)


class Identity(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def plugin(self) -> str: ...
    @property
    def instance(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class Selector:
    matchers: tuple[Matcher, ...] = ()

    def equal(self, key: str) -> str | None:
        """The value ``key`` must equal, when a matcher pins it (used to narrow lookups)."""
        return next((m.value for m in self.matchers if m.key == key and m.op == "="), None)

    def matches(self, item: Identity) -> bool:
        for m in self.matchers:
            actual = getattr(item, m.key) if m.key in COLUMNS else item.labels.get(m.key, "")
            if not m.matches(actual):
                return False
        return True

    def sql(self, first: int, alias: str = "s") -> tuple[str, list[str]]:
        """A WHERE fragment over ``series`` (as ``alias``) and its parameters from ``$first``."""
        parts: list[str] = []
        params: list[str] = []
        for m in self.matchers:
            n = first + len(params)
            if m.key in COLUMNS:
                column = f"{alias}.{m.key}"
            else:
                params.append(m.key)
                column = f"coalesce({alias}.labels ->> ${n}, '')"
                n += 1
            if m.pattern is not None:
                params.append(f"^(?:{m.value})$")
                sql_op = "~" if m.op == "=~" else "!~"
            else:
                params.append(m.value)
                sql_op = "=" if m.op == "=" else "<>"
            parts.append(f"{column} {sql_op} ${n}")
        return (" AND ".join(parts) or "TRUE"), params

    def with_equal(self, key: str, value: str | None) -> Selector:
        if not value:
            return self
        return Selector((*self.matchers, Matcher(key, "=", value)))


def parse(text: str | None) -> Selector:
    """Parse a selector; raises SelectorError (400) saying what is wrong and where.

    The grammar is the one alert rules use (``schemas.alerts.parse_selector``); the API adds
    its own limits.
    """
    if text is None or not text.strip():
        return Selector()
    if len(text) > MAX_SELECTOR:
        raise SelectorError(f"selector is longer than {MAX_SELECTOR} characters")
    if "\x00" in text:
        raise SelectorError("selector contains a NUL character")
    try:
        parsed = parse_selector(text)
    except RuleError as exc:
        raise SelectorError(str(exc)) from None
    if len(parsed.matchers) > MAX_MATCHERS:
        raise SelectorError(f"selector has more than {MAX_MATCHERS} matchers")
    return Selector(parsed.matchers)
