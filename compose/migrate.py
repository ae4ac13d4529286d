"""Alembic driven from code: `unity migrate` and `unity up` call these; no alembic.ini needed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from unity import migrations
from unity.sdk.settings import Endpoints

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)


def _sqlalchemy_url(database_url: str) -> str:
    url = make_url(database_url)
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


async def _run(ep: Endpoints, action: str, revision: str) -> str:
    engine = create_async_engine(
        _sqlalchemy_url(ep.database_url),
        connect_args={"password": ep.database_password} if ep.database_password else {},
    )
    out: list[str] = []

    def run(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", SCRIPT_LOCATION)
        config.attributes["connection"] = connection
        config.print_stdout = lambda text, *args: out.append(text % args if args else text)  # type: ignore[method-assign]
        if action == "upgrade":
            command.upgrade(config, revision)
        elif action == "downgrade":
            command.downgrade(config, revision)
        else:
            command.current(config)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()
    return "\n".join(out)


async def upgrade(ep: Endpoints, revision: str = "head") -> None:
    await _run(ep, "upgrade", revision)
    if revision == "head":
        from unity.compose.catalogue import refresh_catalogue

        await refresh_catalogue(ep)


async def downgrade(ep: Endpoints, revision: str = "base") -> None:
    await _run(ep, "downgrade", revision)


async def current(ep: Endpoints) -> str:
    return await _run(ep, "current", "")


def upgrade_sync(ep: Endpoints, revision: str = "head") -> None:
    asyncio.run(upgrade(ep, revision))
