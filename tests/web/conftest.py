"""A real stack (API on a port, ingest, the test servers) with a test host's last hour stored,
and Debian's chromium driven by Selenium, shared by the browser tests of a module."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from selenium import webdriver

from tests.servers import TestServers
from tests.web import data
from tests.web.stack import Stack, chromium


@pytest.fixture(scope="module")
def stack(servers: TestServers) -> Iterator[Stack]:
    with Stack(servers) as running:
        running.stored_until = time.time() - 5
        running.call(running.store(data.hour(running.stored_until)))
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver
