from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta

from unity.compose.reach import Unreachable, pg_once
from unity.sdk.settings import Settings, endpoints

NAME = "token"
HELP = "API tokens: create (the secret is printed once), list, revoke"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a token and print its secret once")
    create.add_argument("name", help="a unique name, e.g. grafana")
    create.add_argument(
        "--scope",
        action="append",
        choices=["read", "write", "admin"],
        dest="scopes",
        help="repeat for several (default: read); admin includes write, write includes read",
    )
    create.add_argument("--expires-days", type=float, help="expire after this many days")
    sub.add_parser("list", help="list tokens (never their secrets)")
    revoke = sub.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.api.tokens import TokenError, create_token, list_tokens, revoke_token

    try:
        conn = await pg_once(endpoints(settings))
    except Unreachable as exc:
        print(f"unity token: {exc}", file=sys.stderr)
        return 1
    try:
        if args.action == "create":
            expires = None
            if args.expires_days is not None:
                expires = datetime.now(UTC) + timedelta(days=args.expires_days)
            info, secret = await create_token(conn, args.name, args.scopes or ["read"], expires)
            print(f"created token {info.name!r} ({', '.join(info.scopes)}); it is shown once:")
            print(secret)
        elif args.action == "list":
            print(f"{'name':<24} {'prefix':<12} {'scopes':<18} {'state':<8} last used")
            now = datetime.now(UTC)
            for t in await list_tokens(conn):
                state = "revoked" if t.revoked_at else "active"
                if t.expires_at is not None and t.expires_at <= now and not t.revoked_at:
                    state = "expired"
                used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "never"
                print(f"{t.name:<24} {t.prefix:<12} {','.join(t.scopes):<18} {state:<8} {used}")
        else:
            info = await revoke_token(conn, args.name)
            print(f"revoked token {info.name!r}")
    except TokenError as exc:
        print(f"unity token: {exc}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))
