"""The sink a plugin writes samples and events into during one run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from unity.schemas import Sample, Severity, check_name

if TYPE_CHECKING:
    from unity.sdk.plugin import Metric

__all__ = ["MAX_EVENTS", "PendingEvent", "Sink", "UndeclaredMetricError"]

#: Events one run may add: a run's events need distinct Msg-Ids built from the run's seq.
MAX_EVENTS = 1000

_SEVERITIES = frozenset(get_args(Severity))


class UndeclaredMetricError(KeyError):
    """A plugin emitted a metric it did not declare."""

    def __str__(self) -> str:
        return f"metric {self.args[0]!r} is not declared by the plugin"


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event of one run, before the runner adds host, plugin, instance and time.

    Attributes:
        kind: What happened, in the metric-name alphabet (``inventory``, ``top_processes``).
        message: One human line.
        data: Free JSON: the document.
        severity: ``debug``, ``info``, ``warning``, ``error`` or ``critical``.
    """

    kind: str
    message: str
    data: dict[str, Any]
    severity: Severity


class Sink:
    """Collects the samples and events of one run.

    A sample's unit and kind come from the plugin's declarations. Events are documents rather
    than numbers (an inventory, a top N); the runner publishes them on
    ``<root>.events.<host>.<plugin>`` after a run that did not fail.

    Attributes:
        samples: The samples added so far, in order.
        events: The events added so far, in order.
    """

    def __init__(self, declared: Mapping[str, Metric]) -> None:
        self._declared = declared
        self.samples: list[Sample] = []
        self.events: list[PendingEvent] = []

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

    def event(
        self,
        kind: str,
        message: str = "",
        data: Mapping[str, Any] | None = None,
        severity: Severity = "info",
    ) -> None:
        """Add an event to this run's output.

        Args:
            kind: What happened, in the metric-name alphabet (``os_info``, ``power_lost``).
            message: One human line.
            data: The document, JSON-encodable; copied, so later changes do not leak in.
            severity: ``debug``, ``info`` (default), ``warning``, ``error`` or ``critical``.

        Raises:
            ValueError: ``kind`` breaks the name rules, ``severity`` is not one of the five, or
                the run already added :data:`MAX_EVENTS` events.
        """
        if len(self.events) >= MAX_EVENTS:
            raise ValueError(f"a run may add at most {MAX_EVENTS} events")
        problem = check_name(kind, "event kind")
        if problem is not None:
            raise ValueError(problem[1])
        if severity not in _SEVERITIES:
            raise ValueError(f"event severity {severity!r} is not one of {sorted(_SEVERITIES)}")
        self.events.append(PendingEvent(kind, message, dict(data or {}), severity))
