from __future__ import annotations

import argparse
import asyncio

from unity.sdk.settings import Settings, endpoints

NAME = "ingest"
HELP = "run ingest workers on the shared durable consumer"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the consumer (default 1: this process)",
    )
    parser.add_argument(
        "--worker-name",
        default="w0",
        help="instance name of this worker in its own metrics (plugin unity-ingest)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.compose import services

    if args.workers < 1:
        raise SystemExit("unity ingest: --workers must be at least 1")
    if args.workers > 1:
        return services.run_ingest_workers(settings, args.workers)
    asyncio.run(services.run_ingest(settings, endpoints(settings), args.worker_name))
    return 0
