from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from unity.sdk.settings import Endpoints, Settings, endpoints

NAME = "maintain"
HELP = "storage maintenance: partitions ahead, rollups, retention (a loop, or --once)"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="run once, print what was done, exit")


async def _serve(settings: Settings, ep: Endpoints, once: bool) -> int:
    from unity.ingest.maintenance import Maintainer

    maintainer = Maintainer(settings, ep)
    await maintainer.start()
    try:
        if once:
            report = await maintainer.run_once()
            print(
                f"{report.backend}: created {len(report.partitions_created)} partitions, "
                f"dropped {len(report.partitions_dropped)}, moved {report.rows_moved} rows, "
                f"expired {report.rows_expired} rows"
                + (" (skipped: another maintainer is running)" if report.skipped else ""),
                flush=True,
            )
            return 0
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, maintainer.stop)
        log.info("maintenance every %.0fs", maintainer.interval)
        await maintainer.run()
        return 0
    finally:
        await maintainer.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_serve(settings, endpoints(settings), args.once))
