"""The `unity` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from compose.settings import SettingsError, endpoints, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unity", description="Unity telemetry pipeline")
    parser.add_argument("--config", help="TOML settings file (also UNITY_CONFIG)")
    parser.add_argument("--data-dir", help="folder for all data (default ./.unity)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole pipeline on embedded servers")
    up.add_argument("--api-port", type=int)

    mig = sub.add_parser("migrate", help="database schema migrations")
    mig.add_argument("action", choices=["upgrade", "downgrade", "current"], nargs="?")
    mig.add_argument("revision", nargs="?")

    sub.add_parser("ingest", help="run one ingest worker")
    sub.add_parser("api", help="run the HTTP API")
    col = sub.add_parser("collector", help="run the collector for this host")
    col.add_argument("--once", action="store_true", help="collect once and print, no NATS")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(
            args.config,
            data_dir=args.data_dir,
            api_port=getattr(args, "api_port", None),
        )
    except SettingsError as exc:
        print(f"unity: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "up":
        from compose.stack import Stack, StackError

        try:
            return Stack(settings).run()
        except StackError as exc:
            print(f"unity up: {exc}", file=sys.stderr)
            return 1
    if args.command == "collector" and args.once:
        from compose.services import run_collector

        asyncio.run(run_collector(settings, endpoints(settings), once=True))
        return 0
    ep = endpoints(settings)
    if args.command == "migrate":
        from compose import migrate

        action = args.action or "upgrade"
        if action == "current":
            print(asyncio.run(migrate.current(ep)) or "(no revision)")
        elif action == "downgrade":
            asyncio.run(migrate.downgrade(ep, args.revision or "base"))
        else:
            asyncio.run(migrate.upgrade(ep, args.revision or "head"))
        return 0
    from compose import services

    if args.command == "ingest":
        asyncio.run(services.run_ingest(settings, ep))
    elif args.command == "api":
        services.run_api(settings, ep)
    elif args.command == "collector":
        asyncio.run(services.run_collector(settings, ep))
    return 0
