from __future__ import annotations

import argparse

from unity.sdk.settings import Settings, endpoints

NAME = "api"
HELP = "run the HTTP API"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-port", type=int, help="port (also UNITY_API_PORT)")
    parser.add_argument(
        "--workers", type=int, help="uvicorn worker processes (also UNITY_API_WORKERS; default 1)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.compose import services

    return services.run_api(settings, endpoints(settings), args.workers or settings.api_workers)
