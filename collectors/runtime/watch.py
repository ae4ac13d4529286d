"""Live plugin settings from the registry's JetStream KV bucket.

Key ``<host>.<plugin>.<instance or _>``; value JSON
``{"enabled": bool, "interval_s": float | null, "config": {...}, "revision": int}``
(see ``schemas.Subjects.config_bucket``). A deleted key gives the plugin back its file config.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from unity.schemas import PluginSettings, token

log = logging.getLogger(__name__)

_RETRY_S = 2.0


@dataclass(frozen=True, slots=True)
class Change:
    """One key changed: ``override`` None means deleted (back to the file config)."""

    plugin: str
    instance: str
    override: PluginSettings | None


def parse_key(key: str, host: str) -> tuple[str, str] | None:
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != token(host):
        return None
    plugin, instance = parts[1], parts[2]
    return plugin, "" if instance == "_" else instance


class ConfigWatch:
    """Follows the bucket and hands each change to ``apply``; survives NATS outages."""

    def __init__(
        self,
        bucket: str,
        host: str,
        apply: Callable[[Change], None],
    ) -> None:
        self.bucket = bucket
        self.host = host
        self._apply = apply
        self._decoder = msgspec.json.Decoder(PluginSettings)
        self.applied = 0

    async def run(self, js: JetStreamContext) -> None:
        """Watch until cancelled; reopen the watch after any NATS error."""
        while True:
            try:
                kv = await self._bucket(js)
                watcher = await kv.watch(f"{token(self.host)}.>")
                async for entry in watcher:
                    if entry is not None:
                        self._handle(entry.key, entry.value, entry.operation)
            except (NatsError, JetStreamError, TimeoutError, OSError) as exc:
                log.warning("config watch on %s failed (%s); retrying", self.bucket, exc)
            await asyncio.sleep(_RETRY_S)

    async def _bucket(self, js: JetStreamContext) -> KeyValue:
        try:
            return await js.key_value(self.bucket)
        except BucketNotFoundError:
            # The registry normally creates it; a collector started first creates it too.
            return await js.create_key_value(bucket=self.bucket, history=5)

    def _handle(self, key: str, value: bytes | None, operation: str | None) -> None:
        names = parse_key(key, self.host)
        if names is None:
            log.warning("config key %r is not <host>.<plugin>.<instance>; ignored", key)
            return
        plugin, instance = names
        if operation in ("DEL", "PURGE") or not value:
            self._apply(Change(plugin, instance, None))
            return
        try:
            override = self._decoder.decode(value)
        except msgspec.DecodeError as exc:
            log.error("config for %s is not valid: %s; keeping the current one", key, exc)
            return
        self._apply(Change(plugin, instance, override))
        self.applied += 1
