from __future__ import annotations

import argparse
import asyncio

from unity.sdk.settings import Settings, endpoints

NAME = "migrate"
HELP = "database schema migrations (Alembic)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade", "downgrade", "current"], nargs="?")
    parser.add_argument("revision", nargs="?", help="target revision (head / base by default)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.compose import migrate  # alembic and SQLAlchemy: loaded only by this command

    ep = endpoints(settings)
    action = args.action or "upgrade"
    if action == "current":
        print(asyncio.run(migrate.current(ep)) or "(no revision)")
    elif action == "downgrade":
        asyncio.run(migrate.downgrade(ep, args.revision or "base"))
    else:
        asyncio.run(migrate.upgrade(ep, args.revision or "head"))
    return 0
