"""A sink that also takes events, for plugins whose output is a document (an inventory, a top N).

The SDK's ``Sink`` takes numeric samples only. Built-ins that also emit events check for this
subclass, so under a runner that has no event support they still publish their samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas import Severity
from sdk import Metric, Sink


@dataclass(frozen=True, slots=True)
class PendingEvent:
    kind: str
    message: str
    data: dict[str, Any]
    severity: Severity


class EventSink(Sink):
    def __init__(self, declared: Mapping[str, Metric]) -> None:
        super().__init__(declared)
        self.events: list[PendingEvent] = []

    def event(
        self,
        kind: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        severity: Severity = "info",
    ) -> None:
        self.events.append(PendingEvent(kind, message, dict(data or {}), severity))


def emit_event(
    sink: Sink, kind: str, message: str, data: Mapping[str, Any], severity: Severity = "info"
) -> None:
    """Add an event when the sink takes events; a plain SDK sink keeps the samples only."""
    if isinstance(sink, EventSink):
        sink.event(kind, message, data, severity)
