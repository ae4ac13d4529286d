"""The collector process: schedules every plugin instance and hands its output to the outbox.

Each instance has its own loop: ticks aligned to the clock (plus jitter), one run at a time, a
timeout per run, exponential backoff after consecutive failures. ``collect`` runs in a daemon
thread of the instance's own, so a plugin that hangs holds one thread and nothing else: the
other loops, the event loop and process exit are never blocked by it. Runs append to the
outbox and return; one sender task publishes in order (collectors/sender.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from unity.collectors.pidstat import collection_tick
from unity.collectors.runtime.agent import AgentPlugin, AgentSnapshot, SlotStats
from unity.collectors.runtime.config import (
    SELF_PLUGIN,
    AgentConfig,
    CollectorConfig,
    ConfigError,
    PluginSpec,
    check_jitter,
    check_plugin_fields,
    check_waits,
    parse_config,
    plugin_config,
)
from unity.collectors.runtime.detection import detect
from unity.collectors.runtime.sender import Sender
from unity.collectors.runtime.spool import DiskSpool, Message, Outbox
from unity.schemas import Event, HealthReport, MetricBatch, Status, Subjects, encode
from unity.sdk import Plugin, Sink
from unity.sdk.configwatch import Change, ConfigWatch
from unity.sdk.connection import connect_nats
from unity.sdk.discovery import discover
from unity.sdk.publisher import event_msg_id, health_msg_id, msg_id
from unity.sdk.runner import RunResult, SeqClock, next_tick, own_health, run_events
from unity.sdk.settings import Endpoints, Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

Outgoing = MetricBatch | Event | HealthReport

_CONNECT_RETRY_S = (0.5, 5.0)
_TIMINGS_KEPT = 5000


@dataclass(frozen=True, slots=True)
class Timing:
    """When one run of one instance was due, started and finished, and how it ended."""

    key: str
    due: float
    started: float
    finished: float
    status: str
    planned: float  # the due time plus this run's jitter


class Worker:
    """One daemon thread per plugin instance, reused run after run.

    A daemon thread never holds up process exit, and one that hangs in a plugin holds only
    itself: the scheduler sees its run still going and skips that instance's ticks.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[..., None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in this worker; the future settles when it returns or raises."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # A run abandoned at its timeout may still fail later; nobody awaits it then.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

        def settle(result: T | None, exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def reply(result: T | None, exc: BaseException | None) -> None:
            # The loop may be closed by now (a plugin that hung past the process's stop).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, exc)

        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        self._jobs.put((functools.partial(fn, *args), reply))
        return future

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, reply = job
            try:
                result = call()
            except BaseException as exc:  # handed to the awaiting task, never lost
                reply(None, exc)
            else:
                reply(result, None)


class Slot:
    """One plugin instance and its schedule state."""

    def __init__(self, cls: type[Plugin], spec: PluginSpec, plugin: Plugin) -> None:
        self.cls = cls
        self.file_spec = spec
        self.spec = spec
        self.plugin = plugin
        self.replacement: Plugin | None = None
        self.ready = False
        self.running: asyncio.Future[None] | None = None
        self.running_since = 0.0
        self.wake = asyncio.Event()
        self.failures = 0
        self.backoff_until = 0.0
        self.runs = 0
        self.failed = 0
        self.timeouts = 0
        self.skipped = 0
        self.last_duration = 0.0
        self.worker = Worker(f"collect-{spec.key}")
        self.seq = SeqClock()

    @property
    def key(self) -> str:
        return self.spec.key

    def stats(self) -> SlotStats:
        return SlotStats(
            self.spec.plugin,
            self.spec.instance,
            self.runs,
            self.failed,
            self.timeouts,
            self.skipped,
            self.last_duration,
        )


def default_config(settings: Settings, available: Mapping[str, type[Plugin]]) -> CollectorConfig:
    """What `unity up` runs: the settings' plugins (when none are listed, every built-in that
    applies on this host) at the settings' interval, a spool in the data dir."""
    names = settings.collect_plugins or detect(available).applies
    tables: dict[str, Any] = {name: {} for name in names}
    agent = {
        "host": settings.host,
        "interval": settings.collect_interval,
        "spool_dir": str(settings.data_path / "spool" / "collector"),
    }
    return parse_config({"agent": agent, "plugins": tables}, available, settings.host)


class Collector:
    """Runs plugin instances on their schedules and publishes batches, events and health."""

    def __init__(
        self,
        settings: Settings,
        ep: Endpoints | None,
        plugins: Sequence[Plugin] = (),
        *,
        interval: float | None = None,
        timeout: float | None = None,
        config: CollectorConfig | None = None,
        available: Mapping[str, type[Plugin]] | None = None,
    ) -> None:
        self.config = config or CollectorConfig(
            AgentConfig(host=settings.host, interval=settings.collect_interval)
        )
        agent = self.config.agent
        self.host = agent.host
        self.subjects: Subjects = settings.subjects
        self.ep = ep
        self._available = available
        specs: list[tuple[type[Plugin], PluginSpec, Plugin | None]] = []
        every = interval or agent.interval
        for plugin in plugins:
            spec = PluginSpec(
                plugin.id,
                plugin.instance,
                every,
                agent.jitter,
                timeout or agent.timeout or max(0.1, every * 0.8),
                True,
                plugin.config,
            )
            specs.append((type(plugin), spec, plugin))
        for spec in self.config.plugins:
            specs.append((self._plugin_class(spec.plugin), spec, None))
        if not specs:
            raise ConfigError("the collector needs at least one plugin")
        self._specs = specs
        self.slots: dict[str, Slot] = {}
        self.not_applicable: dict[str, str] = {}
        disk = DiskSpool(Path(agent.spool_dir), agent.spool_max_bytes) if agent.spool_dir else None
        self.outbox = Outbox(agent.buffer_max_messages, disk)
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self.sender = Sender(
            self.outbox, lambda: self._js, self._connected, ack_timeout=agent.ack_timeout
        )
        self.watch = ConfigWatch(self.subjects.config_bucket, self.host, self.apply)
        self.timings: collections.deque[Timing] = collections.deque(maxlen=_TIMINGS_KEPT)
        self._tasks: list[asyncio.Task[None]] = []
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._running = False
        self._drop_seq = SeqClock()
        self._encoder_type = agent.content_type

    @property
    def plugins(self) -> list[Plugin]:
        return [slot.plugin for slot in self.slots.values()]

    def _plugin_class(self, plugin_id: str) -> type[Plugin]:
        if self._available is None:
            self._available = discover()
        cls = self._available.get(plugin_id)
        if cls is None:
            raise ConfigError(f"unknown plugin {plugin_id!r}")
        return cls

    def _connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self, *, connect: bool = True) -> None:
        """Open the spool, connect (retrying in the background), start sending.

        Plugins are set up by their first run, under its timeout, in their own thread.
        """
        if connect:
            await self.outbox.open()
        for cls, spec, given in self._specs:
            plugin = given or cls(spec.config, instance=spec.instance)
            if given is None and (reason := plugin.unavailable()) is not None:
                # Listed but not for this host (no nvidia-smi...): not run, and not a failure.
                log.warning("plugin %s not applicable here (%s); not run", spec.key, reason)
                self.not_applicable[spec.key] = reason
                continue
            self.slots[spec.key] = Slot(cls, spec, plugin)
        if self.config.agent.self_metrics:
            agent = AgentPlugin(self.snapshot)
            spec = PluginSpec(
                SELF_PLUGIN,
                "",
                self.config.agent.interval,
                0.0,
                max(0.1, self.config.agent.interval * 0.8),
                True,
                agent.config,
            )
            self.slots[spec.key] = Slot(AgentPlugin, spec, agent)
        if connect:
            assert self.ep is not None, "the collector needs NATS endpoints to connect"
            self._tasks.append(asyncio.create_task(self._connect(), name="collector-connect"))
            self.sender.start()

    async def run(self) -> None:
        """Run every instance on its schedule until stop()."""
        self._running = True
        for slot in self.slots.values():
            self._spawn_loop(slot)
        while self._loops and not self._stopping:
            await asyncio.wait(list(self._loops.values()))
            self._loops = {k: t for k, t in self._loops.items() if not t.done()}

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Finish the runs in hand, flush what NATS takes, spool the rest, close."""
        self._stopping = True
        for slot in self.slots.values():
            slot.wake.set()
        if self._loops:
            await asyncio.wait(list(self._loops.values()))
        deadline = time.monotonic() + flush_timeout
        await self.sender.stop(deadline)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for slot in self.slots.values():
            if slot.ready and (slot.running is None or slot.running.done()):
                await self._teardown(slot, slot.plugin)
            slot.worker.close()
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(NatsError, TimeoutError):
                await self._nc.drain()
        await self.outbox.close()

    async def _connect(self) -> None:
        assert self.ep is not None
        delay = _CONNECT_RETRY_S[0]
        while True:
            try:
                self._nc = await connect_nats(
                    self.ep,
                    f"unity-collector@{self.host}",
                    reconnected_cb=self._reconnected,
                    disconnected_cb=self._disconnected,
                )
                break
            except (NatsError, OSError, TimeoutError) as exc:
                log.warning("NATS not reachable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _CONNECT_RETRY_S[1])
        self._js = self._nc.jetstream()
        self.sender.notify()
        if self.config.agent.watch_config:
            await self.watch.run(self._js)

    async def _reconnected(self) -> None:
        log.info("NATS reconnected; sending %d waiting message(s)", len(self.outbox))
        self.sender.notify()

    async def _disconnected(self) -> None:
        if not self._stopping:
            log.warning("NATS disconnected; buffering")

    def _spawn_loop(self, slot: Slot) -> None:
        self._loops[slot.key] = asyncio.create_task(self._loop(slot), name=f"collect-{slot.key}")

    async def _loop(self, slot: Slot) -> None:
        last_due = 0.0
        while not self._stopping:
            spec = slot.spec
            # From the last due time too: a timer that fires a hair early never repeats a tick.
            due = next_tick(max(time.time(), last_due), spec.interval)
            start_at = due + (random.uniform(0, spec.jitter) if spec.jitter else 0.0)  # noqa: S311
            slot.wake.clear()
            try:
                await asyncio.wait_for(slot.wake.wait(), max(0.0, start_at - time.time()))
            except TimeoutError:
                pass
            else:
                continue  # woken: stopping, or the schedule changed
            last_due = due
            if not slot.spec.enabled:
                continue
            if due < slot.backoff_until:
                slot.skipped += 1
                continue
            await self._run(slot, due, start_at)

    async def run_once(self, plugin: Plugin) -> RunResult:
        """Run one instance now and queue its output (tests drive the collector with this)."""
        slot = next(s for s in self.slots.values() if s.plugin is plugin)
        return await self._run(slot, time.time())

    async def collect_all(self) -> list[RunResult]:
        """Run every instance once, concurrently, without publishing (`unity collector --once`)."""
        now = time.time()
        return list(await asyncio.gather(*(self._collect(s, now) for s in self.slots.values())))

    def envelopes(self, result: RunResult) -> list[tuple[str, str, Outgoing]]:
        """Subject, Msg-Id and message of everything a run publishes; the health report last."""
        report = result.report
        base_id = msg_id(self.host, report.plugin, report.instance, result.seq)
        out: list[tuple[str, str, Outgoing]] = []
        if result.batch is not None:
            out.append((self.subjects.metrics(self.host, report.plugin), base_id, result.batch))
        events = self.subjects.events(self.host, report.plugin)
        out += [(events, event_msg_id(base_id, n), e) for n, e in enumerate(result.events)]
        out.append((self.subjects.health(self.host, report.plugin), health_msg_id(base_id), report))
        return out

    async def _run(self, slot: Slot, due: float, planned: float | None = None) -> RunResult:
        result = await self._collect(slot, due, planned)
        *data, (health_subject, health_id, _) = self.envelopes(result)
        for subject, message_id, message in data:
            self._queue(subject, message, message_id)
        report = result.report
        # Drops are told by the unity-collector run, or after any run when it does not run.
        if slot.spec.plugin == SELF_PLUGIN:
            if drops := self._drop_report():
                report = msgspec.structs.replace(report, status="degraded", message=drops)
        elif not self.config.agent.self_metrics and (drops := self._drop_report()):
            self._queue_drop_report(drops)
        self._queue(health_subject, report, health_id)
        return RunResult(result.batch, report, result.seq, result.events)

    def _drop_report(self) -> str:
        """What was dropped since the last report and why, or "" when nothing was."""
        drops = self.outbox.take_drops()
        if not drops:
            return ""
        why = ", ".join(f"{reason}: {count}" for reason, count in drops.most_common())
        return (
            f"dropped {drops.total()} message(s) since the last report ({why}), "
            f"{self.outbox.dropped} in all"
        )

    def _queue_drop_report(self, message: str) -> None:
        # Without self-metrics there is no unity-collector run to carry it: a report of its own.
        now = time.time()
        ts = datetime.fromtimestamp(now, UTC)
        report = HealthReport(
            host=self.host, plugin=SELF_PLUGIN, ts=ts, status="degraded", message=message
        )
        seq = self._drop_seq.next(now)
        base_id = msg_id(self.host, SELF_PLUGIN, "", seq)
        self._queue(self.subjects.health(self.host, SELF_PLUGIN), report, f"{base_id}:health")

    async def _collect(self, slot: Slot, due: float, planned: float | None = None) -> RunResult:
        if slot.running is not None and not slot.running.done():
            # The previous collect is still stuck in its thread: never start a second one.
            now = time.time()
            slot.skipped += 1
            message = f"previous run still running after {now - slot.running_since:.1f}s"
            return self._finish(slot, due, planned, now, Sink({}), "error", message, "busy")
        if slot.replacement is not None:
            if slot.ready:
                await self._teardown(slot, slot.plugin)
            slot.plugin, slot.replacement, slot.ready = slot.replacement, None, False
        plugin = slot.plugin
        sink = Sink(plugin.declared())
        started = time.time()
        slot.runs += 1
        slot.running_since = started
        slot.running = slot.worker.submit(self._work, slot, plugin, sink, due)
        status: Status = "ok"
        message = ""
        outcome = "ok"
        try:
            await asyncio.wait_for(asyncio.shield(slot.running), slot.spec.timeout)
        except TimeoutError:
            status, outcome = "error", "timeout"
            message = f"collect timed out after {slot.spec.timeout:.1f}s"
            slot.timeouts += 1
        except Exception as exc:  # a plugin's failure is reported, never raised
            status, outcome = "error", "error"
            message = f"{type(exc).__name__}: {exc}"
        else:
            status, message = own_health(plugin)
        return self._finish(slot, due, planned, started, sink, status, message, outcome)

    @staticmethod
    def _work(slot: Slot, plugin: Plugin, sink: Sink, due: float) -> None:
        # Setup runs in the run's thread, under its timeout: a plugin whose setup fails is
        # reported like a failed run and tried again on the next one.
        if not slot.ready:
            plugin.setup()
            slot.ready = True
        with collection_tick(due):
            plugin.collect(sink)

    def _finish(
        self,
        slot: Slot,
        due: float,
        planned: float | None,
        started: float,
        sink: Sink,
        status: Status,
        message: str,
        outcome: str,
    ) -> RunResult:
        finished = time.time()
        slot.last_duration = finished - started
        self.timings.append(
            Timing(slot.key, due, started, finished, outcome, due if planned is None else planned)
        )
        spec = slot.spec
        if status != "error":
            if slot.failures:
                log.info("%s recovered after %d failed run(s)", slot.key, slot.failures)
            slot.failures = 0
            slot.backoff_until = 0.0
        else:
            slot.failures += 1
            slot.failed += 1
            wait = min(spec.interval * 2 ** (slot.failures - 1), self.config.agent.max_backoff)
            # Counted in ticks from this run's due time, so the schedule stays on the clock.
            slot.backoff_until = due + wait if slot.failures > 1 else 0.0
            if slot.failures > 1:
                message = f"{message}; {slot.failures} failures in a row, next try in {wait:.0f}s"
            log.warning("%s: %s", slot.key, message)
        ts = datetime.fromtimestamp(started, UTC)
        seq = slot.seq.next(started)
        batch = None
        if status != "error" and sink.samples:
            batch = MetricBatch(
                host=self.host,
                plugin=slot.plugin.id,
                instance=slot.plugin.instance,
                ts=ts,
                seq=seq,
                samples=sink.samples,
            )
        report = HealthReport(
            host=self.host,
            plugin=slot.plugin.id,
            instance=slot.plugin.instance,
            ts=ts,
            status=status,
            message=message,
            duration_ms=round((finished - started) * 1000, 3),
            samples=len(sink.samples) if batch else 0,
        )
        events = run_events(sink, slot.plugin, self.host, ts) if status != "error" else ()
        return RunResult(batch, report, seq, events)

    def _queue(self, subject: str, message: Outgoing, msg_id: str) -> None:
        payload = encode(message, self._encoder_type)
        self.sender.put(Message(subject, payload, msg_id, self._encoder_type))

    async def _teardown(self, slot: Slot, plugin: Plugin) -> None:
        try:
            await asyncio.wait_for(slot.worker.submit(plugin.teardown), 10)
        except Exception as exc:  # a failing teardown must not stop the others
            log.warning("teardown of %s failed: %s", plugin.id, exc)

    def apply(self, change: Change) -> bool:
        """A registry change: new interval, enabled flag or plugin config, from the next tick;
        False when refused (the current config stays)."""
        key = f"{change.plugin}:{change.instance}" if change.instance else change.plugin
        slot = self.slots.get(key)
        if slot is None:
            if change.override is None or not change.override.enabled:
                return True
            try:
                cls = self._plugin_class(change.plugin)
                check_plugin_fields(cls, f"registry {key}")
            except ConfigError as exc:
                log.error("registry enables %s: %s", key, exc)
                return False
            base = PluginSpec(
                cls.id,
                change.instance,
                self.config.agent.interval,
                self.config.agent.jitter,
                self.config.agent.timeout or max(0.1, self.config.agent.interval * 0.8),
                True,
                cls.Config(),
            )
            slot = Slot(cls, base, cls(base.config, instance=change.instance))
            self.slots[key] = slot
            if self._running and not self._stopping:
                self._spawn_loop(slot)
        override = change.override
        if override is None:
            spec = slot.file_spec
        else:
            try:
                config = (
                    plugin_config(slot.cls, override.config, f"registry {key}.config")
                    if override.config
                    else slot.file_spec.config
                )
            except ConfigError as exc:
                log.error("%s; keeping the current config", exc)
                return False
            interval = override.interval_s or slot.file_spec.interval
            if interval <= 0:
                log.error("registry %s: interval_s must be above zero; ignored", key)
                return False
            timeout = min(slot.file_spec.timeout, max(0.1, interval * 0.8))
            try:
                check_jitter(slot.file_spec.jitter, interval, f"registry {key}.interval_s")
                check_waits(override.config, timeout, f"registry {key}.config")
            except ConfigError as exc:
                log.error("%s; keeping the current config", exc)
                return False
            spec = PluginSpec(
                slot.file_spec.plugin,
                slot.file_spec.instance,
                interval,
                slot.file_spec.jitter,
                timeout,
                override.enabled,
                config,
            )
        if spec.config != slot.spec.config:
            slot.replacement = slot.cls(spec.config, instance=spec.instance)
        slot.spec = spec
        slot.failures = 0
        slot.backoff_until = 0.0
        slot.wake.set()
        log.info(
            "%s: registry config applied (enabled=%s, interval=%.1fs)",
            key,
            spec.enabled,
            spec.interval,
        )
        return True

    def snapshot(self) -> AgentSnapshot:
        mean, peak = self.sender.stats.take_latency()
        return AgentSnapshot(
            slots=tuple(s.stats() for s in self.slots.values() if s.spec.plugin != SELF_PLUGIN),
            published=self.sender.stats.published,
            publish_failures=self.sender.stats.failures,
            publish_latency_mean_s=mean,
            publish_latency_max_s=peak,
            buffered=len(self.outbox),
            buffered_bytes=self.outbox.nbytes,
            spooled=len(self.outbox.disk) if self.outbox.disk else 0,
            dropped=self.outbox.dropped,
        )
