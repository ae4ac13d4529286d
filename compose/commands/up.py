from __future__ import annotations

import argparse
import sys

import msgspec

from unity.sdk.settings import Settings

NAME = "up"
HELP = "run the whole pipeline on embedded servers"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-port", type=int, help="port of the API (also UNITY_API_PORT)")
    parser.add_argument(
        "--listen",
        metavar="ADDR",
        help="let collectors on other machines in: NATS listens on ADDR (an address of this "
        "machine, or 0.0.0.0) with TLS and a login per host (also UNITY_NATS_LISTEN)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.compose.embedded import ServerError
    from unity.compose.stack import Stack, StackError

    if args.listen:
        settings = msgspec.structs.replace(settings, nats_listen=args.listen)
    try:
        return Stack(settings).run()
    except (StackError, ServerError, OSError) as exc:
        # One line, no traceback: these are about the machine or the servers, not a bug.
        print(f"unity up: {exc}", file=sys.stderr)
        return 1
