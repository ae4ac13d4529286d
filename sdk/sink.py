"""The sink a plugin writes samples into during one run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from schemas import Sample

if TYPE_CHECKING:
    from sdk.plugin import Metric

__all__ = ["Sink", "UndeclaredMetricError"]


class UndeclaredMetricError(KeyError):
    """A plugin emitted a metric it did not declare."""

    def __str__(self) -> str:
        return f"metric {self.args[0]!r} is not declared by the plugin"


class Sink:
    """Collects the samples of one run; unit and kind come from the plugin's declarations."""

    def __init__(self, declared: Mapping[str, Metric]) -> None:
        self._declared = declared
        self.samples: list[Sample] = []

    def add(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        spec = self._declared.get(name)
        if spec is None:
            raise UndeclaredMetricError(name)
        self.samples.append(
            Sample(
                name=name,
                value=float(value),
                labels=dict(labels) if labels else {},
                unit=spec.unit,
                kind=spec.kind,
            )
        )
