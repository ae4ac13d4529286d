from __future__ import annotations

import argparse
import asyncio

from compose.settings import Settings, endpoints

NAME = "ingest"
HELP = "run an ingest worker on the shared durable consumer"


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, settings: Settings) -> int:
    from compose import services

    asyncio.run(services.run_ingest(settings, endpoints(settings)))
    return 0
