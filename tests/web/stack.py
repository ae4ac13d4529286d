"""A real stack for browser tests: the API on a real port (uvicorn) and ingest, on a fresh
database and subject root of the test servers, run in a thread with its own event loop so
that Selenium's blocking calls can drive a browser against it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.helpers import running_worker, wait_for
from tests.servers import (
    Env,
    TestServers,
    drop_database,
    drop_root,
    fresh_database,
    isolated_settings,
)
from unity.api.app import create_app
from unity.api.tokens import create_token
from unity.compose.embedded import free_port
from unity.ingest.streams import ensure_consumers, ensure_streams
from unity.schemas import MetricBatch, encode
from unity.sdk.connection import connect_nats, pg_pool

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Stack:
    def __init__(self, servers: TestServers) -> None:
        self.servers = servers
        self.name = f"w{uuid.uuid4().hex[:12]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens: dict[str, str] = {}
        self.stored_until = 0.0  # when the test data ends
        self.env: Env | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="web-stack")

    def __enter__(self) -> Stack:
        self._thread.start()
        self._ready.wait(120)
        if self._failed is not None:
            raise RuntimeError("the web test stack did not start") from self._failed
        assert self._ready.is_set(), "the web test stack did not start within 120 s"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the stack's loop and wait for its result."""
        assert self._loop is not None
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test through __enter__
            self._failed = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ep = await fresh_database(self.servers, self.name)
        settings = isolated_settings(ep, self.name)
        self.env = Env(settings, ep, self.name)
        nc = await connect_nats(ep, "web-tests")
        self.js = nc.jetstream()
        await ensure_streams(self.js, settings)
        await ensure_consumers(self.js, settings)
        self.pool = await pg_pool(ep, min_size=1, max_size=2)
        app = create_app(settings, ep)
        # An open event stream never completes: without a grace limit uvicorn waits for it.
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            async with running_worker(settings, ep):
                while not server.started:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.05)
                for scope in ("read", "write", "admin"):
                    _, self.tokens[scope] = await create_token(self.pool, f"web-{scope}", [scope])
                self._ready.set()
                await self._stop.wait()
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)
            await self.pool.close()
            await nc.close()
            await drop_root(ep, settings)
            await drop_database(self.servers, self.name)

    async def store(self, batches: list[MetricBatch]) -> None:
        """Publish the batches (acks awaited) and wait until ingest has stored them all."""
        assert self.env is not None
        subjects = self.env.settings.subjects
        before: int = await self.pool.fetchval("SELECT count(*) FROM samples")
        acks = [
            await self.js.publish_async(subjects.metrics(b.host, b.plugin), encode(b))
            for b in batches
        ]
        await asyncio.gather(*acks)
        expected = before + sum(len(b.samples) for b in batches)
        await wait_for(lambda: self._count_at_least(expected), within=120)

    async def _count_at_least(self, n: int) -> bool:
        count: int = await self.pool.fetchval("SELECT count(*) FROM samples")
        return count >= n


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    """Debian's chromium through chromium-driver, headless, in a profile of its own."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(binary):
            raise AssertionError(
                f"{binary} is missing: apt-get install -y chromium chromium-driver"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def artifacts() -> Path:
    """Where the test run saves its screenshots (a temp folder unless UNITY_TEST_ARTIFACTS)."""
    import os
    import tempfile

    root = Path(os.environ.get("UNITY_TEST_ARTIFACTS") or tempfile.gettempdir())
    folder = root / "unity-web-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
