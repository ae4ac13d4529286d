"""The live stream: SSE over real HTTP, resume with Last-Event-ID, and a stalled client that
costs the others nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest
import uvicorn

from tests.api.conftest import Api, running_api
from tests.helpers import wait_for
from tests.servers import Env
from unity.api import hub, stream
from unity.api.app import create_app
from unity.api.state import AppState
from unity.api.tokens import create_token
from unity.compose.embedded import free_port
from unity.ingest.streams import ensure_streams
from unity.schemas import MetricBatch, Sample
from unity.sdk.connection import connect_nats


def _batch(i: int, host: str = "h1") -> MetricBatch:
    return MetricBatch(
        host=host,
        plugin="probe",
        seq=i,
        ts=time.time(),
        samples=[Sample("probe_value", float(i), {"n": str(i % 2)})],
    )


class AsgiStreamClient:
    """Drives the app at the ASGI level; ``stall`` makes every body send block until
    ``release``, like a client whose socket buffer is full."""

    def __init__(
        self, api: Api, selector: str, stall: bool = False, last_event_id: int | None = None
    ) -> None:
        self.api = api
        self.selector = selector
        self.stall = stall
        self.last_event_id = last_event_id
        self.events: list[tuple[int, dict[str, Any], float]] = []
        self.blocks: list[str] = []  # every SSE block, comments and notices included
        self.status = 0
        self.body = b""  # of a response that is not an event stream
        self._released = asyncio.Event()
        self._buffer = b""
        self._disconnect = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        query = httpx.QueryParams({"selector": self.selector})
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/v1/stream",
            "raw_path": b"/api/v1/stream",
            "query_string": str(query).encode(),
            "root_path": "",
            "headers": [
                (b"host", b"unity"),
                (b"authorization", f"Bearer {self.api.tokens['read']}".encode()),
                *(
                    [(b"last-event-id", str(self.last_event_id).encode())]
                    if self.last_event_id is not None
                    else []
                ),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("unity", 80),
        }
        self._task = asyncio.create_task(self.api.app(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        if not hasattr(self, "_sent_request"):
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            return
        if self.status != 200:
            self.body += message.get("body", b"")
            return
        if self.stall:
            await self._released.wait()
        self._buffer += message.get("body", b"")
        while b"\n\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n\n", 1)
            self.blocks.append(raw.decode())
            fields = dict(line.split(": ", 1) for line in raw.decode().splitlines() if ": " in line)
            if fields.get("event") == "sample":
                self.events.append((int(fields["id"]), json.loads(fields["data"]), time.time()))

    def release(self) -> None:
        self._released.set()

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def close(self) -> None:
        self._disconnect.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 10)


async def test_a_stalled_client_does_not_hold_up_another(env: Env) -> None:
    async with running_api(env, api_stream_queue=8) as api:
        stream = env.settings.subjects.metrics_stream
        consumers = (await api.js.stream_info(stream)).state.consumer_count
        stalled = AsgiStreamClient(api, "probe_value", stall=True)
        prompt = AsgiStreamClient(api, 'probe_value{n="1"}')
        stalled.start()
        prompt.start()
        await wait_for(lambda: api.state.metrics.stream_clients == 2)
        assert await _consumer_count(api, stream, consumers + 1)  # one shared by both
        sent: dict[int, float] = {}
        for i in range(200):
            seq = await api.publish(_batch(i))
            sent[seq] = time.time()
        await wait_for(lambda: len(prompt.events) == 100)
        # Every odd batch matched the prompt client's selector, in stream order.
        assert [e[1]["samples"][0]["value"] for e in prompt.events] == [
            float(i) for i in range(1, 200, 2)
        ]
        assert [e[0] for e in prompt.events] == sorted(e[0] for e in prompt.events)
        # The stalled client's queue stayed bounded; the rest of its events were dropped.
        metrics = api.state.metrics
        assert metrics.stream_dropped >= 200 - 8 - 1
        lags = sorted(t - sent[seq] for seq, _, t in prompt.events)
        print(
            f"\nprompt client while another stalls: {len(lags)} events, "
            f"delay p50 {statistics.median(lags) * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms, "
            f"{metrics.stream_dropped} dropped for the stalled client"
        )
        await prompt.close()
        await stalled.close()
        assert metrics.stream_clients == 0
        # With nobody watching, the shared consumer is gone: the API receives nothing.
        await wait_for(lambda: _consumer_count(api, stream, consumers), within=10)


async def _consumer_count(api: Api, stream: str, expected: int) -> bool:
    return (await api.js.stream_info(stream)).state.consumer_count == expected


@contextlib.asynccontextmanager
async def served(env: Env) -> AsyncIterator[tuple[str, str]]:
    """The app on a real port (uvicorn), with a read token: SSE needs a streaming client."""
    nc = await connect_nats(env.ep, "stream-tests")
    await ensure_streams(nc.jetstream(), env.settings)
    await nc.close()
    app = create_app(env.settings, env.ep)
    port = free_port()
    # An open event stream never completes: without a grace limit uvicorn waits for it forever.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started)
        st: AppState = app.state.unity
        _, token = await create_token(st.pool, "stream", ["read"])
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def _read_events(
    resp: httpx.Response, n: int = 0, until: int = 0
) -> list[tuple[int, dict[str, Any]]]:
    """Events until there are ``n`` of them, or one with id ``until`` arrived."""
    events: list[tuple[int, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    async for line in resp.aiter_lines():
        if line == "":
            if fields.get("event") == "sample":
                events.append((int(fields["id"]), json.loads(fields["data"])))
                if len(events) == n or events[-1][0] == until:
                    return events
            fields = {}
        elif ": " in line:
            key, value = line.split(": ", 1)
            fields[key] = value
    return events


async def test_sse_over_http_and_resume_with_last_event_id(env: Env) -> None:
    async with (
        served(env) as (url, token),
        httpx.AsyncClient(base_url=url, timeout=20) as client,
        running_api(env) as api,
    ):
        headers = {"Authorization": f"Bearer {token}"}
        params = {"selector": '{plugin="probe"}'}
        async with client.stream("GET", "/api/v1/stream", params=params, headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            publishing = asyncio.create_task(_publish_until(api, 3))
            first = await asyncio.wait_for(_read_events(resp, n=3), 20)
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
        assert [e[1]["host"] for e in first] == ["h1"] * 3
        last_seen = first[-1][0]
        # While nobody listens, more arrives; a reconnect with Last-Event-ID gets all of it.
        missed = [await api.publish(_batch(100 + i, host="h2")) for i in range(4)]
        resume = headers | {"Last-Event-ID": str(last_seen)}
        async with client.stream("GET", "/api/v1/stream", params=params, headers=resume) as resp:
            again = await asyncio.wait_for(_read_events(resp, until=missed[-1]), 20)
        ids = [e[0] for e in again]
        # Every event after the last one seen, in order, none twice, the missed ones included.
        assert ids == list(range(last_seen + 1, missed[-1] + 1))
        assert [e[1]["host"] for e in again[-4:]] == ["h2"] * 4

        bad = await client.get("/api/v1/stream", params={"selector": "x{"}, headers=headers)
        assert bad.status_code == 400
        assert (await client.get("/api/v1/stream", params=params)).status_code == 401
        resume_bad = headers | {"Last-Event-ID": "abc"}
        assert (await client.get("/api/v1/stream", headers=resume_bad)).status_code == 400


async def _publish_until(api: Api, n: int) -> None:
    # Keep publishing: the stream's consumer starts at "new", so publish until read.
    for i in range(1000):
        await api.publish(_batch(i))
        await asyncio.sleep(0.05 if i >= n else 0.2)


async def test_a_resumed_clients_consumer_is_deleted_when_it_goes(env: Env) -> None:
    async with running_api(env) as api:
        stream = env.settings.subjects.metrics_stream
        first = await api.publish(_batch(0))
        # Through the API's own connection, so that its JetStream reply inbox already exists.
        consumers = (await api.state.js.stream_info(stream)).state.consumer_count
        subs = len(api.state.nats._subs)
        resumed = AsgiStreamClient(api, "probe_value", last_event_id=first - 1)
        resumed.start()
        await wait_for(lambda: len(resumed.events) == 1)  # the missed batch, replayed
        assert resumed.events[0][0] == first
        assert await _consumer_count(api, stream, consumers + 1)
        assert api.state.hub.resuming == 1
        await resumed.close()
        # Gone with the client, not when the server notices nobody listens.
        assert await _consumer_count(api, stream, consumers)
        assert len(api.state.nats._subs) == subs
        assert api.state.hub.resuming == 0 and api.state.metrics.stream_clients == 0


async def test_resumes_past_the_cap_are_refused_and_live_clients_are_not(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub, "MAX_RESUMING", 2)
    async with running_api(env) as api:
        await api.publish(_batch(0))
        resuming = [AsgiStreamClient(api, "probe_value", last_event_id=0) for _ in range(2)]
        for client in resuming:
            client.start()
        await wait_for(lambda: api.state.hub.resuming == 2)
        refused = AsgiStreamClient(api, "probe_value", last_event_id=0)
        refused.start()
        await wait_for(lambda: refused.done)
        assert refused.status == 503
        assert json.loads(refused.body)["error"]["code"] == "stream_busy"
        live = AsgiStreamClient(api, "probe_value")
        live.start()
        await wait_for(lambda: api.state.metrics.stream_clients == 3)
        assert live.status == 200
        await resuming[0].close()
        again = AsgiStreamClient(api, "probe_value", last_event_id=0)
        again.start()
        await wait_for(lambda: len(again.events) == 1)
        for client in (resuming[1], live, again):
            await client.close()
        assert api.state.hub.resuming == 0 and api.state.metrics.stream_clients == 0


async def test_heartbeats_while_nothing_arrives(env: Env) -> None:
    async with running_api(env, api_stream_heartbeat_s=0.05) as api:
        client = AsgiStreamClient(api, "probe_value")
        client.start()
        await wait_for(lambda: client.blocks.count(": heartbeat") >= 3)
        assert client.status == 200 and client.events == []
        assert client.blocks[0] == f"retry: {stream.RETRY_MS}"
        await client.close()


async def test_a_client_whose_stall_clears_is_told_how_many_it_missed(env: Env) -> None:
    size, published = 8, 50
    async with running_api(env, api_stream_queue=size) as api:
        client = AsgiStreamClient(api, "probe_value", stall=True)
        client.start()
        await wait_for(lambda: api.state.metrics.stream_clients == 1)
        seqs = [await api.publish(_batch(i)) for i in range(published)]
        await wait_for(lambda: api.state.metrics.stream_dropped == published - size)
        client.release()
        await wait_for(lambda: len(client.events) == size)
        notices = [b for b in client.blocks if b.startswith("event: dropped")]
        assert notices == [f'event: dropped\ndata: {{"dropped": {published - size}}}']
        # The notice comes before the samples that survived: the newest ones, in order.
        first_sample = next(i for i, b in enumerate(client.blocks) if "event: sample" in b)
        assert client.blocks.index(notices[0]) < first_sample
        assert [e[0] for e in client.events] == seqs[-size:]
        # Once cleared, it keeps up again.
        later = await api.publish(_batch(published))
        await wait_for(lambda: client.events[-1][0] == later)
        assert sum("event: dropped" in b for b in client.blocks) == 1
        await client.close()
