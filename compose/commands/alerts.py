"""`unity alerts`: run the evaluator; `unity alerts test CHANNEL` sends a test message;
`unity alerts check FILE` validates a rule file without connecting."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import uuid

from unity.sdk.settings import Endpoints, Settings, endpoints

NAME = "alerts"
HELP = "run the alert evaluator and notifier; test a channel; check a rule file"
SHUTDOWN_DEADLINE_S = 15.0
log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        default="run",
        choices=("run", "test", "check"),
        help="run (default), test CHANNEL, check FILE",
    )
    parser.add_argument("target", nargs="?", help="the channel (test) or rule file (check)")
    parser.add_argument(
        "--name",
        default="a0",
        help="evaluator name: its durable consumers are alerts-NAME (default a0)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "check":
        return _check(args.target)
    if args.action == "test":
        if not args.target:
            print("unity alerts test: name the channel", file=sys.stderr)
            return 2
        return asyncio.run(_test(settings, endpoints(settings), args.target))
    from unity.ingest.alerts.store import RuleFileError

    try:
        asyncio.run(serve(settings, endpoints(settings), args.name))
    except RuleFileError as exc:
        print(f"unity: {exc}", file=sys.stderr)
        return 2
    return 0


def _check(path: str | None) -> int:
    from unity.ingest.alerts.store import RuleFileError, read_rule_file

    if not path:
        print("unity alerts check: name the rule file", file=sys.stderr)
        return 2
    try:
        rules = read_rule_file(path)
    except RuleFileError as exc:
        print(f"unity: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: {len(rules)} rule(s) valid")
    return 0


async def serve(settings: Settings, ep: Endpoints, name: str = "a0") -> None:
    from unity.ingest.alerts.service import Evaluator

    evaluator = Evaluator(settings, ep, name=name)
    await evaluator.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(evaluator.run())
    log.info("alert evaluator %s running with %d rules", name, len(evaluator.engine.rules))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    await evaluator.stop()
    try:
        await asyncio.wait_for(task, SHUTDOWN_DEADLINE_S)
    except TimeoutError:
        log.error("alert evaluator %s did not stop within %.0fs", name, SHUTDOWN_DEADLINE_S)
    finally:
        await evaluator.close()


async def _test(settings: Settings, ep: Endpoints, channel: str) -> int:
    """Send through the channel now, record the delivery, print its outcome."""
    from unity.ingest.alerts.sender import send
    from unity.sdk.connection import pg_connect

    conn = await pg_connect(ep)
    try:
        row = await conn.fetchrow("SELECT id, url FROM alert_channels WHERE name = $1", channel)
        if row is None:
            print(f"unity: no channel {channel!r}", file=sys.stderr)
            return 1
        change_id = f"test:{channel}:{uuid.uuid4().hex[:12]}"
        message = f"Test message from Unity to channel {channel}"
        error = await asyncio.to_thread(
            send, row["url"], "[Unity] test message", message, "info", "firing"
        )
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO alert_history (change_id, rule, fingerprint, episode, state,"
                " severity, message, ts) VALUES ($1, 'test', 'test', 0, 'firing', 'info', $2,"
                " now())",
                change_id,
                message,
            )
            await conn.execute(
                "INSERT INTO alert_deliveries (change_id, channel_id, group_key, status,"
                " attempts, error, sent_at) VALUES ($1, $2, $1, $3, 1, $4,"
                " CASE WHEN $3 = 'sent' THEN now() END)",
                change_id,
                row["id"],
                "sent" if error is None else "failed",
                error or "",
            )
    finally:
        await conn.close()
    if error is not None:
        print(f"{channel}: failed: {error}", file=sys.stderr)
        return 1
    print(f"{channel}: sent ({change_id})")
    return 0
