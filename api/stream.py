"""``GET /stream``: live samples as Server-Sent Events, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from api import selectors
from api.errors import ApiError
from api.hub import Hub
from api.operation import Operation, Param
from api.state import state_of

RETRY_MS = 2000


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise ApiError(400, "bad_last_event_id", f"Last-Event-ID {raw!r} is not a stream sequence")
    return int(raw)


async def _events(
    hub: Hub, selector: selectors.Selector, after: int | None, heartbeat: float
) -> AsyncGenerator[bytes, None]:
    async with hub.client(selector, after) as client:
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
    """Closes its generator however the response ends: a client cut off while its send was
    blocked leaves the generator suspended at a yield, and only ``aclose`` unregisters it."""

    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._events.aclose()


async def stream(request: Request) -> Response:
    st = state_of(request)
    selector = selectors.parse(request.query_params.get("selector"))
    after = _last_event_id(request)
    await st.hub.available()  # 503 now, before the event stream starts
    return EventStream(_events(st.hub, selector, after, st.settings.api_stream_heartbeat_s))


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
