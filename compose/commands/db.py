from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from unity.sdk.settings import Settings, endpoints

if TYPE_CHECKING:
    from unity.compose.dbroles import Role

NAME = "db"
HELP = "PostgreSQL login roles per service (ingest writes the data; api and alerts cannot)"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    roles = sub.add_parser("roles", help="create or update the roles and their grants")
    roles.add_argument("--prefix", default="unity", help="role names are <prefix>_<service>")
    roles.add_argument(
        "--out",
        help="folder of the password files <prefix>_<service>.password, 0600; an existing "
        "file's password is kept (default: <data dir>/secrets)",
    )


async def _apply(settings: Settings, prefix: str, passwords: dict[str, str]) -> list[Role]:
    from unity.compose import dbroles
    from unity.sdk.connection import pg_connect

    conn = await pg_connect(endpoints(settings))
    try:
        return await dbroles.apply(conn, prefix, passwords)
    finally:
        await conn.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.compose.dbroles import ROLES

    out = Path(args.out) if args.out else settings.data_path / "secrets"
    passwords = {}
    for service in ROLES:
        path = out / f"{args.prefix}_{service}.password"
        if path.exists():
            passwords[service] = path.read_text().strip()
    try:
        roles = asyncio.run(_apply(settings, args.prefix, passwords))
    except OSError as exc:
        print(f"unity db: cannot reach PostgreSQL: {exc}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    for role in roles:
        path = out / f"{role.name}.password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(role.password + "\n")
        print(f"{role.name}: password in {path}")
    return 0
