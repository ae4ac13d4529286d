"""A plugin as a process of its own: ``sdk.run(MyPlugin)`` or ``unity plugin run <id>``.

Runs the plugin on its interval, publishes each batch and health report through the
:class:`~sdk.publisher.Publisher`, and watches its key in the plugin-config KV bucket so interval,
enabled and config changes apply without a restart. Stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from unity.schemas import HealthReport, PluginSettings, settings_key
from unity.sdk.configwatch import Change, ConfigWatch
from unity.sdk.connection import ConnectionSettings, ConnectionSettingsError
from unity.sdk.plugin import ConfigError, Plugin
from unity.sdk.publisher import Publisher
from unity.sdk.runner import RunResult, SeqClock, collect_once, next_tick
from unity.sdk.settings import Settings

__all__ = ["RunState", "Standalone", "add_arguments", "main", "parser", "run", "serve"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RunState:
    """What the config bucket may change while the plugin runs."""

    enabled: bool = True
    interval: float = 10.0
    problem: str = ""
    pending: msgspec.Struct | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Standalone:
    """One plugin instance in its own process, publishing straight to JetStream.

    Args:
        plugin: The plugin instance to run.
        connection: Where NATS is, from :meth:`ConnectionSettings.from_env`.
        interval: Seconds between runs (runs are aligned to the clock).
        timeout: Longest a ``collect`` may take; default 80 % of the interval.
        watch_config: Follow the plugin's key in the config bucket.
        max_buffered: Messages kept while NATS cannot take them (see :class:`Publisher`).

    Attributes:
        runs: Runs done so far.
        skipped: Due runs skipped because the plugin is disabled.
    """

    def __init__(
        self,
        plugin: Plugin,
        connection: ConnectionSettings,
        *,
        interval: float = 10.0,
        timeout: float | None = None,
        watch_config: bool = True,
        max_buffered: int = 10_000,
    ) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {interval}")
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, got {max_buffered}")
        self.plugin = plugin
        self.connection = connection
        self.timeout = timeout
        self.watch_config = watch_config
        self.state = RunState(interval=interval)
        self.key = settings_key(connection.host, plugin.id, plugin.instance)
        # What a deleted key gives back: the config and interval the plugin started with.
        self._start = (plugin.config, interval)
        self.watch = ConfigWatch(
            connection.subjects.config_bucket,
            connection.host,
            self._change,
            key=self.key,
            create=False,
        )
        self.runs = 0
        self.skipped = 0
        self._max_buffered = max_buffered
        self._nc: NATS | None = None
        self._publisher: Publisher | None = None
        self._kv: KeyValue | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        # Drops named in a health report that reached the stream; a report that is buffered
        # or lost does not count, so its drops are named again in the next one.
        self._reported_dropped = 0
        self._seq = SeqClock()
        self._reported_refused = 0

    @property
    def publisher(self) -> Publisher:
        assert self._publisher is not None, "start() first"
        return self._publisher

    async def start(self) -> None:
        """Connect to NATS, set the plugin up and start watching the config bucket."""
        self._nc = await self.connection.connect(
            f"unity-plugin-{self.plugin.id}@{self.connection.host}", self._reconnected
        )
        js = self._nc.jetstream()
        self._publisher = Publisher(
            js,
            self.connection.subjects,
            max_buffered=self._max_buffered,
            max_payload=self._nc.max_payload,
        )
        await asyncio.to_thread(self.plugin.setup)
        if self.watch_config:
            self._watch_task = asyncio.create_task(self._watch())

    async def _reconnected(self) -> None:
        # The reconnect callback must not wait for acks: flush in the background.
        if self._publisher is not None:
            task = asyncio.create_task(self._publisher.on_reconnect())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def run_once(self) -> RunResult:
        """Collect once and publish the batch (if any), the run's events and the health report."""
        publisher = self.publisher
        await self._swap_config()
        timeout = self.timeout or max(1.0, self.state.interval * 0.8)
        result = await collect_once(self.plugin, self.connection.host, timeout, self._seq)
        if result.batch is not None:
            await publisher.publish_batch(result.batch)
        for index, event in enumerate(result.events):
            await publisher.publish_event(event, result.seq, index)
        dropped, refused = publisher.dropped, publisher.refused
        report = self._annotated(result.report, dropped, refused)
        if report.status != "ok":
            log.warning("plugin %s: %s: %s", self.plugin.id, report.status, report.message)
        await publisher.publish_health(
            report, result.seq, on_ack=lambda: self._delivered(dropped, refused)
        )
        self.runs += 1
        return RunResult(result.batch, report, result.seq, result.events)

    async def _swap_config(self) -> None:
        """Apply a config that arrived since the last run, between runs, never during one."""
        config, self.state.pending = self.state.pending, None
        if config is None:
            return
        await asyncio.to_thread(self.plugin.teardown)
        self.plugin.config = config
        try:
            await asyncio.to_thread(self.plugin.setup)
        except Exception as exc:  # reported in the health report; collect will say more
            self.state.problem = f"setup with the new config failed: {type(exc).__name__}: {exc}"

    def _delivered(self, dropped: int, refused: int) -> None:
        """A health report naming ``dropped`` and ``refused`` in total reached the stream."""
        self._reported_dropped = max(self._reported_dropped, dropped)
        self._reported_refused = max(self._reported_refused, refused)

    def _annotated(self, report: HealthReport, dropped: int, refused: int) -> HealthReport:
        """Add what the runner itself has to say: drops not yet reported, a bad config."""
        notes = []
        unreported = dropped - self._reported_dropped
        if unreported:
            notes.append(
                f"dropped {unreported} message(s) since the last delivered report"
                f" ({dropped} since start)"
            )
        if refused > self._reported_refused:
            notes.append(
                f"{refused - self._reported_refused} of them refused for good,"
                f" the last one: {self.publisher.last_refusal}"
            )
        if self.state.problem:
            notes.append(self.state.problem)
        if not notes:
            return report
        message = "; ".join(([report.message] if report.message else []) + notes)
        status = "degraded" if report.status == "ok" else report.status
        return msgspec.structs.replace(report, status=status, message=message)

    async def run(self) -> None:
        """Run at once, then on the interval aligned to the clock, until :meth:`stop`.

        A config change wakes the loop so a shorter interval applies without waiting out the
        old one; a run in hand is never interrupted.
        """
        next_run = time.time()
        while not self._stopping.is_set():
            now = time.time()
            if now >= next_run:
                self.state.changed.clear()
                if self.state.enabled:
                    await self.run_once()
                else:
                    self.skipped += 1
                next_run = next_tick(time.time(), self.state.interval)
                continue
            await self._sleep(next_run - now)
            if self.state.changed.is_set():
                self.state.changed.clear()
                next_run = min(next_run, next_tick(time.time(), self.state.interval))

    async def _sleep(self, seconds: float) -> None:
        """Sleep until ``seconds`` pass, stop is requested or the config changes."""
        waits = {
            asyncio.create_task(self._stopping.wait()),
            asyncio.create_task(self.state.changed.wait()),
        }
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    def request_stop(self) -> None:
        """Make :meth:`run` return after the run in hand (safe from a signal handler)."""
        self._stopping.set()

    async def stop(self) -> None:
        """Stop running, flush what is buffered, tear the plugin down and close.

        What NATS still has not taken after the flush is dropped, counted and logged.
        """
        self._stopping.set()
        if self._watch_task is not None:
            await _cancelled(self._watch_task)
        if self._publisher is not None and not await self._publisher.flush():
            lost = await self._publisher.drop_buffered()
            log.warning(
                "plugin %s: stopping with %d message(s) NATS did not acknowledge (%s); "
                "dropped, %d in total",
                self.plugin.id,
                lost,
                self._publisher.last_error or "no attempt yet",
                self._publisher.dropped,
            )
        await asyncio.to_thread(self.plugin.teardown)
        if self._nc is not None:
            await self._nc.drain()

    async def _watch(self) -> None:
        assert self._nc is not None
        await self.watch.run(self._nc.jetstream())

    def apply(self, raw: bytes) -> bool:
        """Apply one value of this plugin's key (JSON :class:`PluginSettings`) by the rule of
        :mod:`sdk.configwatch`; False when it was stale or refused."""
        return self.watch.handle(self.key, raw)

    def _change(self, change: Change) -> bool:
        settings = change.override
        if settings is None:
            log.info("plugin %s: config key deleted, back to the start config", self.plugin.id)
            settings = PluginSettings()
        try:
            config = self.plugin.parse_config(settings.config) if settings.config else None
            if settings.interval_s is not None and not settings.interval_s > 0:
                raise ConfigError(f"interval_s must be positive, got {settings.interval_s}")
        except ConfigError as exc:
            self.state.problem = f"config refused: {exc}"
            log.warning("plugin %s: %s", self.plugin.id, self.state.problem)
            return False
        # The value is the whole override: what it leaves out is the start config's.
        start_config, start_interval = self._start
        config = start_config if config is None else config
        self.state.pending = config if config != self.plugin.config else None
        self.state.enabled = settings.enabled
        self.state.interval = start_interval if settings.interval_s is None else settings.interval_s
        self.state.problem = ""
        self.state.changed.set()
        log.info(
            "plugin %s: config revision %d applied (enabled=%s, interval=%.1fs)",
            self.plugin.id,
            settings.revision,
            settings.enabled,
            self.state.interval,
        )
        return True


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end.

    Python 3.11's ``asyncio.wait_for`` (under every nats-py request) swallows a cancellation
    that lands as its answer arrives, so one ``cancel()`` can leave the task running: it is
    repeated until the task is done.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Command-line options of a standalone plugin (no secrets: those come from UNITY_NATS_*)."""
    p = argparse.ArgumentParser(prog=prog, description="run a Unity plugin as its own process")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="collect and publish once, then exit")
    p.add_argument(
        "--config", dest="plugin_config", type=Path, help="TOML file with the plugin's config"
    )
    p.add_argument("--instance", default="", help="instance name, when several run")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between runs")
    p.add_argument("--timeout", type=float, help="longest one collect may take, in seconds")
    p.add_argument("--no-watch", action="store_true", help="ignore the config bucket")


async def serve(standalone: Standalone, once: bool) -> int:
    """Start, run (once or until SIGTERM/SIGINT), stop; exit status 1 when a run failed."""
    await standalone.start()
    try:
        if once:
            result = await standalone.run_once()
            sys.stdout.write(msgspec.json.encode(result.report).decode() + "\n")
            # Exit 1 unless the run worked and NATS acknowledged all of it.
            delivered = await standalone.publisher.flush()
            return 0 if delivered and result.report.status != "error" else 1
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, standalone.request_stop)
        await standalone.run()
        return 0
    finally:
        await standalone.stop()


def main(cls: type[Plugin], args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Build the plugin from parsed ``args`` and ``settings`` (default: read from the
    environment), and serve it."""
    try:
        config = cls.load_config(args.plugin_config) if args.plugin_config else None
        plugin = cls(config, instance=args.instance)
        connection = (
            ConnectionSettings.from_env()
            if settings is None
            else ConnectionSettings.from_settings(settings)
        )
        standalone = Standalone(
            plugin,
            connection,
            interval=args.interval,
            timeout=args.timeout,
            watch_config=not args.no_watch,
        )
    except (ConfigError, ValueError) as exc:
        print(f"{cls.id}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(standalone, args.once))
    except ConnectionSettingsError as exc:
        print(f"{cls.id}: {exc}", file=sys.stderr)
        return 1


def run(cls: type[Plugin], argv: Sequence[str] | None = None) -> None:
    """Run ``cls`` as a standalone process: parse argv, then exit with the run's status.

    Example::

        if __name__ == "__main__":
            sdk.run(MyPlugin)
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main(cls, parser(cls.id).parse_args(argv)))
