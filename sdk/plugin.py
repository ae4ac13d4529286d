"""The Plugin base: metadata, a typed config, declared metrics and ``collect(sink)``."""

from __future__ import annotations

import abc
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from unity.schemas import Kind, MetricInfo, PluginInfo, Status
from unity.sdk.configkeys import unknown_key
from unity.sdk.sink import Sink

__all__ = ["ConfigError", "Health", "Metric", "NoConfig", "Plugin"]


class ConfigError(ValueError):
    """A plugin config is invalid; the message names the key and why."""


class NoConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Config of a plugin that takes none."""


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric a plugin declares: its unit, gauge or counter, and what it means."""

    name: str
    unit: str
    kind: Kind = "gauge"
    description: str = ""


@dataclass(frozen=True, slots=True)
class Health:
    """What a plugin says about itself after a successful run (``degraded`` with a reason)."""

    status: Status
    message: str = ""


class Plugin(abc.ABC):
    """Base class of every Unity plugin, built-in or external.

    Subclasses set the class attributes and implement :meth:`collect`, which may block: the
    runner calls it in a worker thread. A failing ``collect`` raises; the runner reports the
    error in a health report and never turns it into data.

    Attributes:
        id: Unique id, used as the subject token (``[A-Za-z0-9_-]``).
        name: Human name.
        version: The plugin's version.
        description: What it measures, one line.
        author: Who maintains it.
        category: A broad group (``system``, ``storage``, ``network``, ``apps``...).
        tags: Free keywords.
        metrics: Every metric ``collect`` may emit.
        Config: A ``msgspec.Struct`` of the plugin's settings, with defaults; declare it and
            every Struct nested in it with ``forbid_unknown_fields=True`` (``parse_config``
            rejects unknown keys at any depth either way; ``unity plugin check`` insists).
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
        if config is not None and not isinstance(config, self.Config):
            raise TypeError(f"config of {self.id} must be {self.Config.__name__}")
        self.config = self.Config() if config is None else config
        self.instance = instance

    @classmethod
    def declared(cls) -> dict[str, Metric]:
        """Declared metrics by name."""
        return {m.name: m for m in cls.metrics}

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any]) -> msgspec.Struct:
        """Build the typed config from plain data (a TOML table, a JSON object).

        Raises:
            ConfigError: naming the first unknown key with its path (``inner.hots``), or the
                key with a wrong value.
        """
        unknown = unknown_key(raw, cls.Config)
        if unknown is not None:
            raise ConfigError(f"unknown key {unknown!r} in the config of plugin {cls.id!r}")
        try:
            return msgspec.convert(dict(raw), cls.Config)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"invalid config of plugin {cls.id!r}: {exc}") from exc

    @classmethod
    def load_config(cls, path: str | Path) -> msgspec.Struct:
        """Read and validate a TOML config file.

        Raises:
            ConfigError: when the file cannot be read or its content is invalid.
        """
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        return cls.parse_config(raw)

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """JSON Schema of the config, generated from ``Config``."""
        return msgspec.json.schema(cls.Config)

    @classmethod
    def info(cls) -> PluginInfo:
        """The metadata the registry shows."""
        return PluginInfo(
            id=cls.id,
            name=cls.name,
            version=cls.version,
            description=cls.description,
            author=cls.author,
            category=cls.category,
            tags=list(cls.tags),
            metrics=[MetricInfo(m.name, m.unit, m.kind, m.description) for m in cls.metrics],
            config_schema=cls.config_schema(),
        )

    def unavailable(self) -> str | None:
        """Why this plugin cannot run on this host, in one line, or None when it can.

        The collector's auto-detection calls it once, after construction and before
        ``setup``, and runs only the plugins that answer None; ``unity collector --list``
        shows each reason ("smartctl not found on PATH", "no /proc/mdstat", "needs the
        'docker' extra: pip install 'unity-telemetry[docker]'"). It must be cheap and must
        not fail: probe for a binary, a file or a socket, never collect.
        """
        return None

    def setup(self) -> None:
        """Prepare before the first run (open handles, probe devices)."""

    def teardown(self) -> None:
        """Release what setup took."""

    def health(self) -> Health | None:
        """Say how the last successful run went, when not simply ``ok`` (e.g. ``degraded``)."""
        return None

    @abc.abstractmethod
    def collect(self, sink: Sink) -> None:
        """Measure once and add the samples to ``sink``."""
