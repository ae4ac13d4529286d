from __future__ import annotations

import argparse

from compose.settings import Settings, endpoints

NAME = "api"
HELP = "run the HTTP API"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-port", type=int, help="port (also UNITY_API_PORT)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from compose import services

    services.run_api(settings, endpoints(settings))
    return 0
