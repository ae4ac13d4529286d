"""The plugin-config KV bucket that collectors and SDK plugins watch (see config_bucket)."""

from __future__ import annotations

import msgspec
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from unity.api.errors import ApiError
from unity.schemas import PluginSettings

HISTORY = 5
_encoder = msgspec.json.Encoder()


class ConfigBucket:
    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self.js = js
        self.bucket = bucket
        self._kv: KeyValue | None = None

    async def _open(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(self.bucket)
            except BucketNotFoundError:
                self._kv = await self.js.create_key_value(bucket=self.bucket, history=HISTORY)
        return self._kv

    async def put(self, key: str, value: PluginSettings) -> int:
        """Publish; returns the KV revision. 503 when NATS cannot take it."""
        try:
            kv = await self._open()
            revision: int = await kv.put(key, _encoder.encode(value))
        except (NatsError, JetStreamError, TimeoutError) as exc:
            raise ApiError(503, "config_not_published", f"NATS did not take {key}: {exc}") from None
        return revision

    async def delete(self, key: str) -> None:
        try:
            kv = await self._open()
            await kv.delete(key)
        except (NatsError, JetStreamError, TimeoutError) as exc:
            raise ApiError(
                503, "config_not_published", f"NATS did not delete {key}: {exc}"
            ) from None
