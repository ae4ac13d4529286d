"""What the API holds while it runs: connections and settings."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import valkey.asyncio as valkey
from nats.aio.client import Client as NATS
from starlette.requests import Request

from compose.settings import Settings


@dataclass(slots=True)
class AppState:
    settings: Settings
    pool: asyncpg.Pool
    valkey: valkey.Valkey
    nats: NATS


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.unity
    return state
