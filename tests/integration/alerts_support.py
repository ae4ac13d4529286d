"""Helpers of the alert tests: real local notification receivers, an evaluator in this process,
rules and channels in the test's database, and a way to publish what a rule watches."""

from __future__ import annotations

import asyncio
import contextlib
import email
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import asyncpg
import msgspec
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from nats.js import JetStreamContext

from tests.servers import Env
from unity.compose.embedded import free_port
from unity.ingest.alerts.service import Evaluator
from unity.ingest.alerts.store import store_rules
from unity.schemas import Event, MetricBatch, Sample, encode
from unity.schemas.alerts import Rule


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # when it arrived (epoch seconds)

    def json(self) -> Any:
        return msgspec.json.decode(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class Receiver:
    """A real HTTP server on a free local port that records every request and answers
    ``status`` (a webhook, ntfy, ...)."""

    status: int = 200
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Kept-alive client connections too: Python 3.11's wait_closed leaves them open.
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Request(method, path, headers, body, time.time()))
                reply = b'{"ok": true}'
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(reply)}\r\n\r\n".encode()
                    + reply
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def texts(self) -> list[str]:
        return [r.text for r in self.requests]


@contextlib.asynccontextmanager
async def receiver(status: int = 200) -> AsyncIterator[Receiver]:
    r = Receiver(status)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@contextlib.asynccontextmanager
async def smtp_server() -> AsyncIterator[tuple[int, list[Message]]]:
    """A real SMTP server (aiosmtpd) on a free local port; yields (port, received messages)."""
    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        yield port, mailbox.messages
    finally:
        await asyncio.to_thread(controller.stop)


async def add_rules(env: Env, *rules: Rule) -> None:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        await store_rules(conn, rules, "api", replace=True)
    finally:
        await conn.close()


async def add_channel(env: Env, name: str, url: str, **fields: Any) -> None:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        await conn.execute(
            "INSERT INTO alert_channels (name, url, min_severity, matchers)"
            " VALUES ($1, $2, $3, $4)",
            name,
            url,
            fields.get("min_severity", "info"),
            fields.get("matchers", ""),
        )
    finally:
        await conn.close()


async def execute(env: Env, sql: str, *args: object) -> None:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def rows(env: Env, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        found: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return found
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def running_evaluator(
    env: Env, name: str = "a0", report_interval: float = 0, **settings: Any
) -> AsyncIterator[Evaluator]:
    """An evaluator in this process, without the default pack and without self-metrics unless
    asked, so that tests see only their own rules' changes."""
    overrides = {"alerts_default_rules": False, "alerts_group_wait_s": 0.3} | settings
    evaluator = Evaluator(
        msgspec.structs.replace(env.settings, **overrides),
        env.ep,
        name=name,
        report_interval=report_interval,
    )
    await evaluator.start()
    task = asyncio.create_task(evaluator.run())
    try:
        yield evaluator
    finally:
        await evaluator.stop()
        await task
        await evaluator.close()


_seq = iter(range(1, 1_000_000_000))


async def publish(
    js: JetStreamContext,
    env: Env,
    host: str,
    samples: list[Sample],
    plugin: str = "memory",
    ts: float | None = None,
) -> None:
    batch = MetricBatch(
        host=host,
        plugin=plugin,
        ts=time.time() if ts is None else ts,
        seq=next(_seq),
        samples=samples,
    )
    await js.publish(env.settings.subjects.metrics(host, plugin), encode(batch))


async def publish_event(js: JetStreamContext, env: Env, event: Event) -> None:
    await js.publish(env.settings.subjects.events(event.host, event.plugin), encode(event))


def memory(value: float) -> list[Sample]:
    return [Sample("memory_used_percent", value, unit="percent")]
