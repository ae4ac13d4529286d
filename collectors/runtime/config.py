"""The collector's TOML config, Telegraf style: an ``[agent]`` table and ``[[plugins.<id>]]``.

Validated at start, without touching the host or the network; every error names the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from unity.schemas import JSON, MSGPACK
from unity.sdk import Plugin

SELF_PLUGIN = "unity-collector"

# Instance names end up in subjects' Msg-Ids and in KV keys, so they use the token alphabet.
_INSTANCE = re.compile(r"[A-Za-z0-9_-]+")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_UNIT_B = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, None: 1}

# Keys of a [[plugins.<id>]] table that belong to the scheduler; the rest is the plugin's config.
SCHEDULE_KEYS = ("interval", "jitter", "timeout", "instance", "enabled")
# A plugin config field named like this is a wait inside a run (a subprocess, a request).
_WAIT_SUFFIX = "_timeout"
_AGENT_KEYS = frozenset(
    {
        "host",
        "interval",
        "jitter",
        "timeout",
        "spool_dir",
        "spool_max_bytes",
        "buffer_max_messages",
        "content_type",
        "self_metrics",
        "max_backoff",
        "watch_config",
        "ack_timeout",
    }
)


class ConfigError(ValueError):
    """The collector config is invalid; the message names the key."""


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """One plugin instance as configured: what to run, how often, with which config."""

    plugin: str
    instance: str
    interval: float
    jitter: float
    timeout: float
    enabled: bool
    config: msgspec.Struct

    @property
    def key(self) -> str:
        return f"{self.plugin}:{self.instance}" if self.instance else self.plugin


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The ``[agent]`` table: defaults for every plugin and the buffer."""

    host: str
    interval: float = 10.0
    jitter: float = 0.0
    timeout: float | None = None
    spool_dir: str = ""
    spool_max_bytes: int = 64 * 1024**2
    buffer_max_messages: int = 10_000
    content_type: str = JSON
    self_metrics: bool = True
    max_backoff: float = 300.0
    watch_config: bool = True
    ack_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    agent: AgentConfig
    plugins: tuple[PluginSpec, ...] = field(default_factory=tuple)


def duration(value: object, key: str) -> float:
    """Seconds from a number or a string like ``"500ms"``, ``"10s"``, ``"1m"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        raise ConfigError(f"{key}: expected a duration like 10, '10s', '500ms', got {value!r}")
    if seconds < 0:
        raise ConfigError(f"{key}: a duration cannot be negative")
    return seconds


def size(value: object, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        return int(match.group(1)) * _UNIT_B[match.group(2)]
    raise ConfigError(f"{key}: expected a size like 67108864 or '64MiB', got {value!r}")


def plugin_config(cls: type[Plugin], raw: Mapping[str, Any], key: str) -> msgspec.Struct:
    """The plugin's typed config from a table; unknown keys and wrong types name the key."""
    try:
        return msgspec.convert(dict(raw), cls.Config, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        unknown = re.match(r"Object contains unknown field `(.+)`", message)
        if unknown:
            raise ConfigError(f"{key}.{unknown.group(1)}: unknown key") from None
        path = re.search(r" - at `\$(.*)`$", message)
        where = f"{key}{path.group(1)}" if path else key
        reason = message.split(" - at ")[0]
        raise ConfigError(f"{where}: {reason}") from None


def _agent(raw: Mapping[str, Any], default_host: str) -> AgentConfig:
    unknown = sorted(set(raw) - _AGENT_KEYS)
    if unknown:
        raise ConfigError(f"agent.{unknown[0]}: unknown key")
    host = raw.get("host", default_host)
    if not isinstance(host, str) or not host:
        raise ConfigError("agent.host: expected a non-empty string")
    content_type = raw.get("content_type", "json")
    types = {"json": JSON, "msgpack": MSGPACK}
    if content_type not in types:
        raise ConfigError(f"agent.content_type: expected 'json' or 'msgpack', got {content_type!r}")
    interval = duration(raw.get("interval", 10.0), "agent.interval")
    if interval <= 0:
        raise ConfigError("agent.interval: must be above zero")
    timeout = raw.get("timeout")
    buffer_max = raw.get("buffer_max_messages", 10_000)
    if not isinstance(buffer_max, int) or isinstance(buffer_max, bool) or buffer_max < 1:
        raise ConfigError("agent.buffer_max_messages: expected a positive integer")
    flags = {}
    for flag in ("self_metrics", "watch_config"):
        value = raw.get(flag, True)
        if not isinstance(value, bool):
            raise ConfigError(f"agent.{flag}: expected true or false")
        flags[flag] = value
    spool_dir = raw.get("spool_dir", "")
    if not isinstance(spool_dir, str):
        raise ConfigError("agent.spool_dir: expected a path")
    jitter = duration(raw.get("jitter", 0.0), "agent.jitter")
    check_jitter(jitter, interval, "agent.jitter")
    return AgentConfig(
        host=host,
        interval=interval,
        jitter=jitter,
        timeout=None if timeout is None else duration(timeout, "agent.timeout"),
        spool_dir=spool_dir,
        spool_max_bytes=size(raw.get("spool_max_bytes", 64 * 1024**2), "agent.spool_max_bytes"),
        buffer_max_messages=buffer_max,
        content_type=types[content_type],
        self_metrics=flags["self_metrics"],
        watch_config=flags["watch_config"],
        max_backoff=duration(raw.get("max_backoff", 300.0), "agent.max_backoff"),
        ack_timeout=duration(raw.get("ack_timeout", 5.0), "agent.ack_timeout"),
    )


def check_plugin_fields(cls: type[Plugin], key: str) -> None:
    """A plugin config field named like a scheduler key could never be set: the table's key
    goes to the scheduler."""
    clash = sorted(set(cls.Config.__struct_fields__) & set(SCHEDULE_KEYS))
    if clash:
        raise ConfigError(
            f"{key}.{clash[0]}: plugin {cls.id!r} has a config field named like the scheduler "
            f"key {clash[0]!r}, so it can never be set; the plugin must rename it"
        )


def check_waits(own: Mapping[str, Any], timeout: float, key: str) -> None:
    """Waits inside a run (``*_timeout`` keys given in the table) end before the run's timeout.

    Otherwise the scheduler gives up on the run first and the plugin's thread stays busy
    waiting, so the next ticks are skipped.
    """
    for name, value in own.items():
        if not name.endswith(_WAIT_SUFFIX) or isinstance(value, bool):
            continue
        if isinstance(value, int | float) and value >= timeout:
            raise ConfigError(
                f"{key}.{name}: {value:g}s must be below the run timeout of {timeout:g}s "
                f"({key}.timeout)"
            )


def check_jitter(jitter: float, interval: float, key: str) -> None:
    if jitter >= interval:
        raise ConfigError(f"{key}: jitter {jitter:g}s must be below the interval {interval:g}s")


def spec_from_table(
    cls: type[Plugin], table: Mapping[str, Any], agent: AgentConfig, key: str
) -> PluginSpec:
    """One ``[[plugins.<id>]]`` table: scheduler keys, then the plugin's own config."""
    check_plugin_fields(cls, key)
    own = {k: v for k, v in table.items() if k not in SCHEDULE_KEYS}
    interval = duration(table.get("interval", agent.interval), f"{key}.interval")
    if interval <= 0:
        raise ConfigError(f"{key}.interval: must be above zero")
    timeout_raw = table.get("timeout", agent.timeout)
    timeout = (
        max(0.1, interval * 0.8) if timeout_raw is None else duration(timeout_raw, f"{key}.timeout")
    )
    if timeout <= 0:
        raise ConfigError(f"{key}.timeout: must be above zero")
    jitter_key = f"{key}.jitter" if "jitter" in table else f"{key}.jitter (from agent.jitter)"
    jitter = duration(table.get("jitter", agent.jitter), f"{key}.jitter")
    check_jitter(jitter, interval, jitter_key)
    instance = table.get("instance", "")
    if not isinstance(instance, str) or (instance and not _INSTANCE.fullmatch(instance)):
        raise ConfigError(f"{key}.instance: expected a name of letters, digits, _ and -")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{key}.enabled: expected true or false")
    config = plugin_config(cls, own, key)
    check_waits(own, timeout, key)
    return PluginSpec(
        plugin=cls.id,
        instance=instance,
        interval=interval,
        jitter=jitter,
        timeout=timeout,
        enabled=enabled,
        config=config,
    )


def parse_config(
    raw: Mapping[str, Any], available: Mapping[str, type[Plugin]], default_host: str
) -> CollectorConfig:
    unknown = sorted(set(raw) - {"agent", "plugins"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (expected [agent] and [[plugins.<id>]])")
    agent_raw = raw.get("agent", {})
    if not isinstance(agent_raw, dict):
        raise ConfigError("agent: expected a table")
    agent = _agent(agent_raw, default_host)
    plugins_raw = raw.get("plugins", {})
    if not isinstance(plugins_raw, dict):
        raise ConfigError("plugins: expected tables [[plugins.<id>]]")
    specs: list[PluginSpec] = []
    seen: set[str] = set()
    for plugin_id, tables in plugins_raw.items():
        cls = available.get(plugin_id)
        if cls is None:
            raise ConfigError(
                f"plugins.{plugin_id}: unknown plugin; installed: {', '.join(sorted(available))}"
            )
        listed = [tables] if isinstance(tables, dict) else tables
        if not isinstance(listed, list) or not all(isinstance(t, dict) for t in listed):
            raise ConfigError(f"plugins.{plugin_id}: expected a table or [[plugins.{plugin_id}]]")
        for index, table in enumerate(listed):
            key = f"plugins.{plugin_id}[{index}]" if len(listed) > 1 else f"plugins.{plugin_id}"
            spec = spec_from_table(cls, table, agent, key)
            if spec.key in seen:
                raise ConfigError(
                    f"{key}.instance: {spec.instance!r} is used twice for {plugin_id}; "
                    "give each instance its own name"
                )
            seen.add(spec.key)
            specs.append(spec)
    return CollectorConfig(agent, tuple(specs))


def load_config(
    path: str | Path, available: Mapping[str, type[Plugin]], default_host: str
) -> CollectorConfig:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read collector config {path}: {exc}") from exc
    try:
        return parse_config(raw, available, default_host)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
