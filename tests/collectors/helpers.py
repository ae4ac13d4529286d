"""Run a plugin into an in-memory sink and look its samples up by name and labels."""

from __future__ import annotations

from pathlib import Path

from unity.sdk import Sink
from unity.sdk.testing import collect as collect

TESTDATA = Path(__file__).parent / "testdata"

Key = tuple[str, frozenset[tuple[str, str]]]


def by_key(sink: Sink) -> dict[Key, float]:
    """Samples keyed by (name, labels); a duplicate series in one batch fails the test."""
    found: dict[Key, float] = {}
    for s in sink.samples:
        key = (s.name, frozenset(s.labels.items()))
        assert key not in found, f"series {key} emitted twice in one run"
        found[key] = s.value
    return found


def key(metric: str, /, **labels: str) -> Key:
    return (metric, frozenset(labels.items()))


def case(plugin: str, name: str) -> Path:
    return TESTDATA / plugin / name
