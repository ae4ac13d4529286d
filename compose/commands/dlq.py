from __future__ import annotations

import argparse
import asyncio
import sys

from unity.sdk.settings import Settings, endpoints

NAME = "dlq"
HELP = "inspect and re-drive the dead-letter stream"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="oldest entries: sequence, time, reason, subject, error")
    listing.add_argument("--reason", help="only this reason, e.g. malformed")
    listing.add_argument("--limit", type=int, default=50)
    show = sub.add_parser("show", help="one entry with its headers and original bytes")
    show.add_argument("seq", type=int)
    replay = sub.add_parser(
        "replay", help="publish entries to their original subject again and remove them"
    )
    replay.add_argument("seq", type=int, nargs="*", help="entry sequences")
    replay.add_argument("--reason", help="every entry of this reason")
    replay.add_argument("--limit", type=int, default=10_000)


async def _dlq(settings: Settings, args: argparse.Namespace) -> int:
    from unity.compose.reach import Unreachable, nats_once
    from unity.ingest import dlq

    subjects = settings.subjects
    try:
        nc = await nats_once(endpoints(settings), "unity-dlq")
    except Unreachable as exc:
        print(f"unity dlq: {exc}", file=sys.stderr)
        return 1
    js = nc.jetstream()
    try:
        if args.action == "list":
            found = 0
            async for entry in dlq.entries(js, subjects, args.reason, args.limit):
                found += 1
                when = entry.time.isoformat() if entry.time else "?"
                print(f"{entry.seq}\t{when}\t{entry.reason}\t{entry.subject}\t{entry.error}")
            print(f"{found} entr{'y' if found == 1 else 'ies'}", file=sys.stderr)
        elif args.action == "show":
            entry = await dlq.get(js, subjects, args.seq)
            for key, value in sorted(entry.headers.items()):
                print(f"{key}: {value}")
            print()
            sys.stdout.flush()
            sys.stdout.buffer.write(entry.data + b"\n")
        else:
            seqs = list(args.seq)
            if args.reason:
                seqs += [e.seq async for e in dlq.entries(js, subjects, args.reason, args.limit)]
            if not seqs:
                print("unity dlq replay: give sequences or --reason", file=sys.stderr)
                return 2
            for seq in seqs:
                subject = await dlq.redrive(js, subjects, seq)
                print(f"{seq} -> {subject}")
    except dlq.DeadLetterError as exc:
        print(f"unity dlq: {exc}", file=sys.stderr)
        return 1
    finally:
        await nc.drain()
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_dlq(settings, args))
