"""``GET /stream``: live samples as Server-Sent Events, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from unity.api import selectors
from unity.api.errors import ApiError
from unity.api.hub import Hub, StreamClient
from unity.api.operation import Operation, Param
from unity.api.state import state_of

RETRY_MS = 2000


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise ApiError(400, "bad_last_event_id", f"Last-Event-ID {raw!r} is not a stream sequence")
    return int(raw)


async def _events(client: StreamClient, heartbeat: float) -> AsyncGenerator[bytes, None]:
    yield f"retry: {RETRY_MS}\n\n".encode()
    while True:
        try:
            seq, data = await asyncio.wait_for(client.queue.get(), heartbeat)
        except TimeoutError:
            yield b": heartbeat\n\n"
            continue
        if dropped := client.take_dropped():
            yield f'event: dropped\ndata: {{"dropped": {dropped}}}\n\n'.encode()
        yield b"id: %d\nevent: sample\ndata: %s\n\n" % (seq, data)


class EventStream(StreamingResponse):
    """Unregisters its client however the response ends, even a client cut off while its
    send was blocked, or one that went before the first byte; the client is registered before
    the response exists, so that refusals (503) come as a status, not mid-stream."""

    def __init__(self, hub: Hub, client: StreamClient, heartbeat: float) -> None:
        self._events = _events(client, heartbeat)
        super().__init__(
            self._events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._hub = hub
        self._client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._events.aclose()
            finally:
                await self._hub.close(self._client)


async def stream(request: Request) -> Response:
    st = state_of(request)
    selector = selectors.parse(request.query_params.get("selector"))
    after = _last_event_id(request)
    await st.hub.available()  # 503 now, before the event stream starts
    client = await st.hub.open(selector, after)
    return EventStream(st.hub, client, st.settings.api_stream_heartbeat_s)


OPERATIONS = [
    Operation(
        "GET",
        "/stream",
        stream,
        "Live samples as Server-Sent Events (event 'sample', id = stream sequence)",
        "stream",
        "read",
        params=(
            Param("selector", "query", {"type": "string"}, "series selector"),
            Param("Last-Event-ID", "header", {"type": "string"}, "resume after this sequence"),
        ),
        media_type="text/event-stream",
    ),
]
