"""Live plugin settings from the registry's JetStream KV bucket, for both plugin hosts.

Key ``<host>.<plugin>.<instance or _>``; value JSON :class:`~schemas.PluginSettings`
(``{"enabled": bool, "interval_s": float | null, "config": {...}, "revision": int}``, see
``schemas.Subjects.config_bucket``). The collector watches every key of its host, a standalone
plugin its own key. One rule for both:

- **Revisions**: a value whose ``revision`` is not above the last one applied for its key is
  stale (a late or replayed write) and is ignored; ``revision`` 0 (a value written by hand)
  always applies.
- **Whole values**: a value is the plugin's whole override; what it leaves out (no
  ``interval_s``, an empty ``config``) is the config the plugin started with (its file, its
  command line), not the previous value's.
- **Deletes**: deleting (or purging) the key gives the plugin back the config it started with
  and forgets the key's revision, so the next value applies.

A value that cannot be decoded, or that the host refuses (an unknown config key, a bad
interval), is logged and changes nothing; its revision is not remembered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from unity.schemas import PluginSettings, token

__all__ = ["Change", "ConfigWatch", "parse_key"]

log = logging.getLogger(__name__)

_RETRY_S = 2.0


@dataclass(frozen=True, slots=True)
class Change:
    """One key changed: ``override`` None means deleted (back to the start config).

    Attributes:
        plugin: The plugin id.
        instance: The instance name, empty for a single instance.
        override: The new settings, or None when the key was deleted.
    """

    plugin: str
    instance: str
    override: PluginSettings | None


def parse_key(key: str, host: str) -> tuple[str, str] | None:
    """``(plugin, instance)`` of a key of ``host``, or None when it is not one."""
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != token(host):
        return None
    plugin, instance = parts[1], parts[2]
    return plugin, "" if instance == "_" else instance


class ConfigWatch:
    """Follows the bucket and hands each change to ``apply``; survives NATS outages.

    Args:
        bucket: The KV bucket's name.
        host: The host whose keys are followed.
        apply: Takes a change; returns True when it was applied, False when refused.
        key: Follow this one key instead of every key of ``host``.
        create: Create the bucket when it is missing (the collector may start before the
            registry); else wait for it.
    """

    def __init__(
        self,
        bucket: str,
        host: str,
        apply: Callable[[Change], bool],
        *,
        key: str | None = None,
        create: bool = True,
    ) -> None:
        self.bucket = bucket
        self.host = host
        self.key = key
        self._apply = apply
        self._create = create
        self._decoder = msgspec.json.Decoder(PluginSettings)
        self._revisions: dict[str, int] = {}
        self.applied = 0

    async def run(self, js: JetStreamContext) -> None:
        """Watch until cancelled; reopen the watch after any NATS error."""
        while True:
            try:
                kv = await self._bucket(js)
                # KeyWatcher is untyped in nats-py.
                watcher: Any = await kv.watch(self.key or f"{token(self.host)}.>")
                try:
                    async for entry in watcher:
                        if entry is not None:
                            self.handle(entry.key, entry.value, entry.operation)
                finally:
                    await watcher.stop()
            except BucketNotFoundError:
                log.debug("config bucket %s does not exist yet", self.bucket)
            except (NatsError, JetStreamError, TimeoutError, OSError) as exc:
                log.warning("config watch on %s failed (%s); retrying", self.bucket, exc)
            await asyncio.sleep(_RETRY_S)

    async def _bucket(self, js: JetStreamContext) -> KeyValue:
        try:
            return await js.key_value(self.bucket)
        except BucketNotFoundError:
            if not self._create:
                raise
            # The registry normally creates it; a collector started first creates it too.
            return await js.create_key_value(bucket=self.bucket, history=5)

    def handle(self, key: str, value: bytes | None, operation: str | None = None) -> bool:
        """Apply one entry of the bucket by the module's rule; True when it was applied."""
        names = parse_key(key, self.host)
        if names is None:
            log.warning("config key %r is not <host>.<plugin>.<instance>; ignored", key)
            return False
        plugin, instance = names
        if operation in ("DEL", "PURGE") or not value:
            self._revisions.pop(key, None)
            override = None
        else:
            try:
                override = self._decoder.decode(value)
            except msgspec.DecodeError as exc:
                log.error("config for %s is not valid: %s; keeping the current one", key, exc)
                return False
            if override.revision and override.revision <= self._revisions.get(key, 0):
                log.info("config for %s: revision %d is stale; ignored", key, override.revision)
                return False
        if not self._apply(Change(plugin, instance, override)):
            return False
        if override is not None:
            self._revisions[key] = override.revision
        self.applied += 1
        return True
