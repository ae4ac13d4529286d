"""The Plugin base: metadata, a typed config, declared metrics and ``collect(sink)``."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from schemas import Kind
from sdk.sink import Sink


class NoConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Config of a plugin that takes none."""


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric a plugin declares: its unit, gauge or counter, and what it means."""

    name: str
    unit: str
    kind: Kind = "gauge"
    description: str = ""


class Plugin(abc.ABC):
    """Base class of every Unity plugin, built-in or external.

    Subclasses set the class attributes and implement :meth:`collect`, which may block: the
    runner calls it in a worker thread. A failing ``collect`` raises; the runner reports the
    error in a health report and never turns it into data.
    """

    id: ClassVar[str]
    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    author: ClassVar[str] = ""
    category: ClassVar[str] = "system"
    tags: ClassVar[tuple[str, ...]] = ()
    metrics: ClassVar[tuple[Metric, ...]] = ()
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        self.config = self.Config() if config is None else config
        self.instance = instance

    @classmethod
    def declared(cls) -> dict[str, Metric]:
        return {m.name: m for m in cls.metrics}

    def setup(self) -> None:
        """Prepare before the first run (open handles, probe devices)."""

    def teardown(self) -> None:
        """Release what setup took."""

    @abc.abstractmethod
    def collect(self, sink: Sink) -> None:
        """Measure once and add the samples to ``sink``."""
