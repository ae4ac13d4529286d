from __future__ import annotations

import argparse
import asyncio
import sys

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
    sub = parser.add_subparsers(dest="action", metavar="add")
    add = sub.add_parser(
        "add",
        help="on the hub (`unity up --listen`): a login for another machine's collector, and "
        "the one line that starts it there",
    )
    add.add_argument("host", help="the host name that machine's data will carry")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "add":
        return _add(settings, args.host)
    from unity.collectors.runtime.process import list_plugins, serve

    if args.list:
        return list_plugins(settings)
    ep = None if args.once else endpoints(settings)
    return asyncio.run(serve(settings, ep, once=args.once, config_path=args.collector_config))


def _add(settings: Settings, host: str) -> int:
    from unity.compose.remote import RemoteError, add_collector

    try:
        line, taken = add_collector(settings, host)
    except RemoteError as exc:
        print(f"unity collector add: {exc}", file=sys.stderr)
        return 1
    state = "the running hub took it" if taken else "the hub takes it when it starts"
    print(f"# {host} may publish only its own data ({state}). On {host}, with Unity installed")
    print("# (pip install unity-telemetry), run this line; it holds the password, keep it safe:")
    print(line)
    return 0
