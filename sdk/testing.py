"""Helpers for plugin unit tests: an in-memory sink and one-call runs, no NATS needed."""

from __future__ import annotations

from collections.abc import Mapping

from unity.schemas import Sample
from unity.sdk.plugin import Plugin
from unity.sdk.runner import RunResult, collect_once
from unity.sdk.sink import Sink

__all__ = ["MemorySink", "collect", "run"]


class MemorySink(Sink):
    """A sink that keeps the samples of one plugin and answers questions about them."""

    def __init__(self, plugin: Plugin | type[Plugin]) -> None:
        super().__init__(plugin.declared())

    def names(self) -> set[str]:
        """Names of every metric emitted."""
        return {s.name for s in self.samples}

    def find(self, name: str, labels: Mapping[str, str] | None = None) -> list[Sample]:
        """Samples of ``name`` whose labels include ``labels``."""
        want = dict(labels or {})
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in want.items())
        ]

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The value of the one sample of ``name`` matching ``labels``.

        Raises:
            LookupError: when no sample or more than one matches.
        """
        found = self.find(name, labels)
        if len(found) != 1:
            raise LookupError(f"{len(found)} samples of {name!r} match {dict(labels or {})}")
        return found[0].value


def collect(plugin: Plugin) -> MemorySink:
    """Call ``plugin.collect`` once into a fresh :class:`MemorySink` (exceptions propagate)."""
    sink = MemorySink(plugin)
    plugin.collect(sink)
    return sink


async def run(plugin: Plugin, host: str = "test", timeout: float = 10.0) -> RunResult:
    """One run as the runner does it: a failure becomes a health report, not an exception."""
    return await collect_once(plugin, host, timeout)
