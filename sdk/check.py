"""Check a plugin against the contract: metadata, config, declared metrics and one real run."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Literal, get_args

import msgspec

from unity.schemas import (
    JSON,
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES,
    MAX_UNIT_LEN,
    MSGPACK,
    Kind,
    PluginInfo,
    check_name,
    check_sample,
    decode,
    encode,
)
from unity.sdk.configkeys import lenient_structs
from unity.sdk.plugin import Plugin
from unity.sdk.runner import collect_once

__all__ = ["Finding", "check", "check_metadata", "check_run"]

ID_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
VERSION_RE = re.compile(r"\d+\.\d+\.\d+\S*")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found; ``error`` fails the check, ``warning`` does not."""

    level: Literal["error", "warning"]
    what: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.what}: {self.message}"


def check_metrics(cls: type[Plugin]) -> list[Finding]:
    """The declared metrics: names, units, kinds, descriptions, no duplicates."""
    if not cls.metrics:
        return [Finding("error", "metrics", "no metrics declared")]
    found: list[Finding] = []
    seen: set[str] = set()
    for metric in cls.metrics:
        what = f"metric {metric.name!r}"
        problem = check_name(metric.name, "metric name")
        if problem is not None:
            found.append(Finding("error", what, problem[1]))
        if metric.name in seen:
            found.append(Finding("error", what, "declared twice"))
        seen.add(metric.name)
        if len(metric.unit) > MAX_UNIT_LEN:
            limit = f"unit is {len(metric.unit)} characters, the limit is {MAX_UNIT_LEN}"
            found.append(Finding("error", what, limit))
        if metric.kind not in get_args(Kind):
            found.append(Finding("error", what, f"kind {metric.kind!r} is not gauge or counter"))
        if not metric.description:
            found.append(Finding("warning", what, "has no description"))
    return found


def check_metadata(cls: type[Plugin]) -> list[Finding]:
    """Metadata, declared metrics and the config type, without running anything."""
    found: list[Finding] = []

    def error(what: str, message: str) -> None:
        found.append(Finding("error", what, message))

    def warning(what: str, message: str) -> None:
        found.append(Finding("warning", what, message))

    plugin_id = getattr(cls, "id", None)
    if not isinstance(plugin_id, str) or not ID_RE.fullmatch(plugin_id):
        error("id", f"{plugin_id!r} must match {ID_RE.pattern}")
    for attr in ("name", "description", "author", "category"):
        if not getattr(cls, attr):
            (error if attr in ("name", "description") else warning)(attr, "is empty")
    if not VERSION_RE.fullmatch(cls.version):
        error("version", f"{cls.version!r} is not a version like 1.2.3")
    found += check_metrics(cls)
    config_type: object = cls.Config
    if not (isinstance(config_type, type) and issubclass(config_type, msgspec.Struct)):
        error("Config", "is not a msgspec.Struct")
        return found
    for struct in lenient_structs(cls.Config):
        error(
            "Config",
            f"{struct.__qualname__} accepts unknown keys: declare it with"
            " forbid_unknown_fields=True",
        )
    try:
        info = cls.info()
        if decode(encode(info), PluginInfo) != info:
            error("info", "does not survive a JSON round trip")
    except (TypeError, ValueError) as exc:
        error("Config", f"has no JSON Schema: {exc}")
    return found


async def check_run(
    plugin: Plugin, timeout: float = 10.0, now: float | None = None
) -> list[Finding]:
    """One real ``collect``: it must succeed and every sample must pass the wire limits."""
    found: list[Finding] = []
    await asyncio.to_thread(plugin.setup)
    try:
        result = await collect_once(plugin, "check", timeout)
    finally:
        await asyncio.to_thread(plugin.teardown)
    if result.report.status == "error":
        return [Finding("error", "collect", result.report.message)]
    if result.batch is None:
        return [Finding("warning", "collect", "produced no samples")]
    samples = result.batch.samples
    if len(samples) > MAX_SAMPLES:
        found.append(Finding("error", "collect", f"{len(samples)} samples, limit {MAX_SAMPLES}"))
    clock = time.time() if now is None else now
    for i, sample in enumerate(samples):
        problem = check_sample(sample, clock, clock)
        if problem is not None:
            found.append(Finding("error", f"sample {i} ({sample.name})", problem[1]))
    for content_type in (JSON, MSGPACK):
        size = len(encode(result.batch, content_type))
        if size > MAX_PAYLOAD_BYTES:
            found.append(
                Finding("error", "collect", f"batch is {size} bytes, limit {MAX_PAYLOAD_BYTES}")
            )
    return found


def check(
    cls: type[Plugin], config: msgspec.Struct | None = None, timeout: float = 10.0
) -> list[Finding]:
    """Everything :func:`check_metadata` and :func:`check_run` find."""
    found = check_metadata(cls)
    if any(f.level == "error" for f in found):
        return found
    try:
        plugin = cls(config)
    except TypeError as exc:
        return [*found, Finding("error", "Config", f"has no usable defaults ({exc}): pass one")]
    return found + asyncio.run(check_run(plugin, timeout))
