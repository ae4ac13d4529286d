"""Prometheus-style series selectors: ``name{label="x", host=~"nas.*", plugin!="y"}``.

``host``, ``plugin``, ``instance`` and ``name`` (also ``__name__``) match series columns; any
other key matches a label, and a missing label equals the empty string, as in Prometheus.
Regexes match the whole value. Compiled to SQL with every value a bind parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

from unity.api.errors import ApiError

Op = Literal["=", "!=", "=~", "!~"]
COLUMNS = ("host", "plugin", "instance", "name")
MAX_SELECTOR = 2000
MAX_MATCHERS = 32

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
_LABEL_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
_OP = re.compile(r"=~|!~|!=|=")
_OPS: dict[str, Op] = {"=": "=", "!=": "!=", "=~": "=~", "!~": "!~"}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}


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
class Matcher:
    key: str
    op: Op
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, actual: str) -> bool:
        if self.pattern is not None:
            found = self.pattern.fullmatch(actual) is not None
            return found if self.op == "=~" else not found
        return (actual == self.value) == (self.op == "=")


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
    """Parse a selector; raises SelectorError (400) saying what is wrong and where."""
    if text is None or not text.strip():
        return Selector()
    if len(text) > MAX_SELECTOR:
        raise SelectorError(f"selector is longer than {MAX_SELECTOR} characters")
    if "\x00" in text:
        raise SelectorError("selector contains a NUL character")
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> SelectorError:
        return SelectorError(f"bad selector at position {self.pos}: {what} in {self.text!r}")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Selector:
        matchers: list[Matcher] = []
        self.skip()
        if name := self._match(_IDENT):
            matchers.append(Matcher("name", "=", name))
        if self.peek() == "{":
            self.pos += 1
            while self.peek() != "}":
                if not self.peek():
                    raise self.fail("missing '}'")
                matchers.append(self._matcher())
                if self.peek() == ",":
                    self.pos += 1
                elif self.peek() != "}":
                    raise self.fail("expected ',' or '}'" if self.peek() else "missing '}'")
            self.pos += 1
        if self.peek():
            raise self.fail(f"unexpected {self.peek()!r}")
        if not matchers:
            raise self.fail("no metric name and no matchers")
        if len(matchers) > MAX_MATCHERS:
            raise SelectorError(f"selector has more than {MAX_MATCHERS} matchers")
        return Selector(tuple(matchers))

    def _match(self, pattern: re.Pattern[str]) -> str:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if m is None:
            return ""
        self.pos = m.end()
        return m.group()

    def _matcher(self) -> Matcher:
        key = self._match(_LABEL_KEY)
        if not key:
            raise self.fail("expected a label name")
        if key == "__name__":
            key = "name"
        op = _OPS.get(self._match(_OP))
        if op is None:
            raise self.fail(f"expected =, !=, =~ or !~ after {key!r}")
        value = self._string()
        if op in ("=~", "!~"):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise self.fail(f"bad regex {value!r} for {key!r}: {exc}") from None
            return Matcher(key, op, value, pattern)
        return Matcher(key, op, value)

    def _string(self) -> str:
        quote = self.peek()
        if quote not in ('"', "'"):
            raise self.fail("expected a quoted value")
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == quote:
                return "".join(out)
            if ch == "\\":
                if self.pos >= len(self.text) or self.text[self.pos] not in _ESCAPES:
                    raise self.fail("bad escape in a quoted value")
                out.append(_ESCAPES[self.text[self.pos]])
                self.pos += 1
            else:
                out.append(ch)
        raise self.fail("unterminated quoted value")
