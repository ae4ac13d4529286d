from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.servers import (
    Env,
    TestServers,
    drop_database,
    drop_root,
    fresh_database,
    isolated_settings,
    start_servers,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use the session's real servers: ``-m "not servers"`` runs the rest."""
    for item in items:
        if "servers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(scope="session")
def servers() -> Iterator[TestServers]:
    yield from start_servers()


@pytest.fixture
async def env(servers: TestServers) -> AsyncIterator[Env]:
    name = f"t{uuid.uuid4().hex[:12]}"
    ep = await fresh_database(servers, name)
    settings = isolated_settings(ep, name)
    yield Env(settings, ep, name)
    await drop_root(ep, settings)
    await drop_database(servers, name)
