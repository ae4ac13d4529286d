"""`unity collector` as a process: config, lifecycle, and `--once`.

Kept apart from compose.services so the collector process imports neither the API nor ingest:
it is the one Unity process on every machine, and its footprint is measured.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping

import msgspec

from unity.collectors.runtime.config import CollectorConfig, ConfigError, load_config
from unity.collectors.runtime.detection import detect
from unity.collectors.runtime.runner import Collector, default_config
from unity.collectors.runtime.spool import SpoolError
from unity.sdk.discovery import Installed, discover
from unity.sdk.plugin import Plugin
from unity.sdk.settings import Endpoints, Settings

log = logging.getLogger(__name__)


def collector_config(
    settings: Settings, path: str | None, available: Mapping[str, type[Plugin]]
) -> CollectorConfig:
    """The collector's config file when given, else one built from the settings."""
    try:
        if path:
            return load_config(path, available, settings.host)
        return default_config(settings, available)
    except ConfigError as exc:
        raise SystemExit(f"unity collector: {exc}") from None


async def print_once(collector: Collector) -> int:
    """Run each plugin once and print every message it would publish, one JSON line each:
    ``{"subject": ..., "msg_id": ..., "message": {...}}``."""
    await collector.start(connect=False)
    for key, reason in collector.not_applicable.items():
        print(f"unity collector: {key} not applicable here: {reason}", file=sys.stderr)
    failed = 0
    encoder = msgspec.json.Encoder()
    for result in await collector.collect_all():
        failed += result.report.status == "error"
        for subject, msg_id, message in collector.envelopes(result):
            line = {"subject": subject, "msg_id": msg_id, "message": message}
            sys.stdout.write(encoder.encode(line).decode() + "\n")
    await collector.stop(flush_timeout=0)
    return 1 if failed else 0


def list_plugins(settings: Settings) -> int:
    """Print what detection finds: the plugins that run by default, and why the rest do not."""
    available = discover()
    found = detect(available)
    if settings.collect_plugins:
        print(f"UNITY_COLLECT_PLUGINS overrides detection: {','.join(settings.collect_plugins)}")
    width = max(map(len, available), default=0)
    print("detected (run when no plugin list is given):")
    for plugin_id in found.applies:
        print(f"  {plugin_id}")
    print("left out:")
    for plugin_id, reason in found.left_out.items():
        print(f"  {plugin_id:<{width}}  {reason}")
    return 0


async def serve(
    settings: Settings, ep: Endpoints | None, *, once: bool = False, config_path: str | None = None
) -> int:
    """Run until SIGTERM or SIGINT: finish the runs in hand, flush, spool the rest, close."""
    # Plugin modules are imported as the config names them, not all of them up front.
    available = Installed()
    config = collector_config(settings, config_path, available)
    collector = Collector(settings, ep, config=config, available=available)
    if once:
        return await print_once(collector)
    if ep is None:
        raise SystemExit("unity collector: NATS endpoints are needed unless --once")
    try:
        await collector.start()
    except SpoolError as exc:
        raise SystemExit(f"unity collector: {exc}") from None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(collector.run())
    log.info("collector running for host %s: %s", collector.host, ", ".join(collector.slots))
    await stop.wait()
    await collector.stop()
    await task
    return 0
