from __future__ import annotations

import argparse
import asyncio

from compose.settings import Settings, endpoints

NAME = "collector"
HELP = "run the collector for this host"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="collect once and print, no NATS")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from compose import services

    ep = None if args.once else endpoints(settings)
    asyncio.run(services.run_collector(settings, ep, once=args.once))
    return 0
