from __future__ import annotations

import argparse
import asyncio

from unity.sdk.settings import Settings, endpoints

NAME = "collector"
HELP = "run the collector for this host"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        dest="collector_config",
        metavar="FILE",
        help="collector TOML ([agent], [[plugins.<id>]]); default: the settings' plugin list",
    )
    parser.add_argument(
        "--once", action="store_true", help="run each plugin once and print, no NATS"
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="show the plugins detected on this host and why the others are left out",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.collectors.runtime.process import list_plugins, serve

    if args.list:
        return list_plugins(settings)
    ep = None if args.once else endpoints(settings)
    return asyncio.run(serve(settings, ep, once=args.once, config_path=args.collector_config))
