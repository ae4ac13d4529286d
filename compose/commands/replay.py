from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta

from unity.sdk.settings import Settings, endpoints

NAME = "replay"
HELP = "re-ingest a time range of the streams (backfill); what is stored already stays as is"

_BAR = 30


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", required=True, help="start: RFC 3339, epoch, or relative as --since=-2h"
    )
    parser.add_argument("--until", help="end (default: now)")
    parser.add_argument("--subject", help="only these subjects, e.g. unity.metrics.nas.>")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--:--"
    return str(timedelta(seconds=round(seconds)))


def _bar(done: int, total: int, rate: float, eta: float | None) -> str:
    share = done / total if total else 1.0
    filled = min(_BAR, round(share * _BAR))
    return (
        f"\r[{'#' * filled}{'.' * (_BAR - filled)}] {done}/{total} msgs "
        f"{share:6.1%}  {rate:,.0f} msg/s  ETA {_duration(eta)}"
    )


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from unity.api.errors import ApiError
    from unity.api.params import parse_time
    from unity.ingest.replay import Progress, Replay, ReplayError
    from unity.sdk.connection import connect_nats, pg_pool

    try:
        now = datetime.now(UTC)
        since = parse_time("--since", args.since, now)
        until = parse_time("--until", args.until, now)
    except ApiError as exc:
        print(f"unity replay: {exc.message}", file=sys.stderr)
        return 2
    ep = endpoints(settings)
    nc = await connect_nats(ep, "unity-replay")
    pool = await pg_pool(ep, max_size=2)
    try:
        try:
            replay = Replay(settings, nc.jetstream(), pool, since, until, args.subject)
        except ReplayError as exc:
            print(f"unity replay: {exc}", file=sys.stderr)
            return 2
        total = await replay.count()
        print(
            f"replaying {total} message(s) of {', '.join(replay.streams)} "
            f"from {since.isoformat()} to {replay.until.isoformat()}",
            file=sys.stderr,
        )

        def show(p: Progress) -> None:
            sys.stderr.write(_bar(p.done, max(p.total, p.done), p.rate, p.eta))
            sys.stderr.flush()

        progress = await replay.run(show)
        stats = replay.stats
        rejected = ", ".join(f"{r}: {n}" for r, n in sorted(stats.dead.items())) or "none"
        print(
            f"\nreplayed {progress.done} message(s), {stats.samples} sample(s) in "
            f"{_duration(progress.elapsed)} ({progress.rate:,.0f} msg/s); "
            f"{stats.merges} batch(es) held rows stored already; "
            f"{stats.series_looked_up} series looked up; rejected: {rejected}",
            file=sys.stderr,
        )
    finally:
        await pool.close()
        await nc.drain()
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_replay(settings, args))
