"""What the API holds while it runs: connections, settings, auth, metrics and the stream hub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import valkey.asyncio as valkey
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from starlette.requests import Request

from unity.sdk.settings import Settings

if TYPE_CHECKING:
    from unity.api.auth import Authenticator
    from unity.api.hub import Hub
    from unity.api.kv import ConfigBucket
    from unity.api.metrics import ApiMetrics


@dataclass(slots=True)
class AppState:
    settings: Settings
    pool: asyncpg.Pool
    valkey: valkey.Valkey
    nats: NATS
    js: JetStreamContext
    auth: Authenticator
    metrics: ApiMetrics
    hub: Hub
    config: ConfigBucket


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.unity
    return state
