"""The alert evaluator (`unity alerts`): its own durable consumers, timers, publishing, notifying.

Each evaluator reads every metric batch, health report and event through durable consumers
of its own (``alerts-<name>``), so its windows see all the data; changes it computes are
published on ``<root>.alerts.<rule>`` with ``Nats-Msg-Id`` = the change id. Two evaluators
compute the same ids for the same transition and JetStream keeps one message per id (its
duplicate window); past that window the unique change id in ``alert_history`` still turns a
republished change into a no-op. Notifications come from the stored changes through one
durable consumer that all evaluators share (``alerts-notify``): each change is delivered to
one of them, recorded once, and its deliveries are queued in PostgreSQL (the outbox).

Order per fetched batch: compute, upsert alert state, publish, ack. A crash anywhere before the
ack means redelivery; the restored state continues the same episodes, so the same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import Error as JetStreamError

from unity.ingest.alerts import store
from unity.ingest.alerts.engine import Engine
from unity.ingest.alerts.outbox import Outbox
from unity.ingest.streams import ensure_streams
from unity.schemas import DecodeError, Event, HealthReport, MetricBatch, Sample, decode
from unity.schemas.alerts import DEFAULT_RULES, AlertChange
from unity.sdk import Publisher
from unity.sdk.connection import connect_nats, pg_pool
from unity.sdk.settings import Endpoints, Settings

log = logging.getLogger(__name__)

NOTIFY_DURABLE = "alerts-notify"
NOTIFY_ACK_WAIT_S = 5.0
PLUGIN = "unity-alerts"
FETCH = 500
FETCH_WAIT_S = 1.0
FETCH_LINGER_S = 0.01
TICK_S = 0.25
RULES_EVERY_S = 2.0
OUTBOX_POLL_S = 1.0
_change_decoder = msgspec.json.Decoder(AlertChange)
_change_encoder = msgspec.json.Encoder()


def consumer(
    name: str, filters: list[str], deliver: DeliverPolicy, ack_wait: float = 60.0
) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=name,
        deliver_policy=deliver,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_ack_pending=100_000,
        max_deliver=-1,
        filter_subjects=filters,
        max_waiting=64,
    )


class Evaluator:
    def __init__(
        self,
        settings: Settings,
        ep: Endpoints,
        *,
        name: str = "a0",
        clock: Callable[[], float] = time.time,
        report_interval: float | None = None,
    ) -> None:
        self.settings = settings
        self.ep = ep
        self.name = name
        self.durable = f"alerts-{name}"
        self.clock = clock
        self.report_interval = (
            settings.alerts_report_interval_s if report_interval is None else report_interval
        )
        self.engine = Engine()
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._pool: asyncpg.Pool | None = None
        self._outbox: Outbox | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._caught_up = {"metrics": False, "events": False}
        self._rules_version: tuple[int, datetime | None] | None = None
        self._rule_ids: dict[str, int] = {}
        self._publish_lock = asyncio.Lock()
        self.changes = 0
        self.skipped = 0
        self.eval_seconds: list[float] = []

    @property
    def outbox(self) -> Outbox:
        assert self._outbox is not None, "start() first"
        return self._outbox

    async def start(self) -> None:
        self._nc = await connect_nats(self.ep, f"unity-alerts-{self.name}")
        self._js = self._nc.jetstream()
        await ensure_streams(self._js, self.settings)
        subjects = self.settings.subjects
        root = subjects.root
        # NEW on first creation: an evaluator starts from now, not from a week of history.
        await self._js.add_consumer(
            subjects.metrics_stream,
            consumer(self.durable, [f"{root}.metrics.>"], DeliverPolicy.NEW),
        )
        await self._js.add_consumer(
            subjects.events_stream,
            consumer(self.durable, [f"{root}.events.>", f"{root}.health.>"], DeliverPolicy.NEW),
        )
        await self._js.add_consumer(
            subjects.events_stream,
            # Recording a change takes milliseconds: a change held by an evaluator that died
            # goes to another within NOTIFY_ACK_WAIT_S.
            consumer(NOTIFY_DURABLE, [f"{root}.alerts.>"], DeliverPolicy.NEW, NOTIFY_ACK_WAIT_S),
        )
        self._pool = await pg_pool(self.ep, max_size=6)
        self._outbox = Outbox(
            self._pool, self.settings.alerts_attempts, self.settings.alerts_retry_s
        )
        if self.settings.alerts_default_rules:
            await store.store_rules(self._pool, DEFAULT_RULES, "default", replace=False)
        for path in self.settings.alerts_rule_files:
            await store.store_rules(self._pool, store.read_rule_file(path), "file", replace=True)
        await self._refresh_rules()
        self.engine.restore(await store.restore(self._pool))
        # Announced as restored, before refilling the windows can move them on: a state saved
        # just before a crash but never published (killed between the two) is recorded now,
        # not skipped by the next transition (same id as its first publication: deduplicated).
        await self._republish()
        started = self.clock()
        points = await store.warm(self._pool, self.engine, started)
        log.info("windows refilled from %d stored points", points)
        for host, plugin, instance in await store.sources(self._pool):
            self.engine.watch(host, plugin, instance, started)
        # Restored alerts are announced again: a change published before a crash but never
        # recorded is recorded now; one already recorded is a no-op (same id).
        await self._republish()

    async def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(NatsError):
                await self._nc.drain()
        if self._pool is not None:
            await self._pool.close()

    async def run(self) -> None:
        assert self._js is not None
        subjects = self.settings.subjects
        metrics = await self._js.pull_subscribe_bind(
            durable=self.durable, stream=subjects.metrics_stream
        )
        events = await self._js.pull_subscribe_bind(
            durable=self.durable, stream=subjects.events_stream
        )
        notify = await self._js.pull_subscribe_bind(
            durable=NOTIFY_DURABLE, stream=subjects.events_stream
        )
        tasks = [
            asyncio.create_task(self._pull(metrics, "metrics")),
            asyncio.create_task(self._pull(events, "events")),
            asyncio.create_task(self._notify(notify)),
            asyncio.create_task(self._timers()),
            asyncio.create_task(self._send()),
        ]
        if self.report_interval > 0:
            tasks.append(asyncio.create_task(self._report()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for sub in (metrics, events, notify):
                with contextlib.suppress(NatsError):
                    await sub.unsubscribe()

    # Evaluation ---------------------------------------------------------------------------

    async def _pull(self, sub: JetStreamContext.PullSubscription, which: str) -> None:
        backlog = True
        while not self._stopping.is_set():
            try:
                msgs = await _next(sub, FETCH, backlog)
            except (NatsTimeoutError, TimeoutError):
                self._caught_up[which] = True
                backlog = False
                continue
            except NatsError as exc:
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if not msgs:
                continue
            backlog = len(msgs) >= FETCH
            started = time.perf_counter()
            changes: list[AlertChange] = []
            now = self.clock()
            for msg in msgs:
                changes += self._evaluate(msg, now)
            self.eval_seconds.append(time.perf_counter() - started)
            self._caught_up[which] = msgs[-1].metadata.num_pending == 0
            try:
                await self._emit(changes)
            except (asyncpg.PostgresError, OSError, NatsError, JetStreamError) as exc:
                # Not acked: the batch comes again after the ack wait, with the same ids.
                log.error(
                    "changes not saved (%s: %s); batch left for redelivery", type(exc).__name__, exc
                )
                await asyncio.sleep(1.0)
                continue
            await _ack_all(msgs)

    def _evaluate(self, msg: Msg, now: float) -> list[AlertChange]:
        published = msg.metadata.timestamp
        ingest = published.timestamp() if published else now
        headers = msg.headers
        content_type = headers.get("Content-Type") if headers else None
        kind = msg.subject.split(".", 2)[1]
        try:
            if kind == "metrics":
                return self.engine.on_batch(
                    decode(msg.data, MetricBatch, content_type), ingest, now
                )
            if kind == "health":
                report = decode(msg.data, HealthReport, content_type)
                return self.engine.on_health(report, ingest, now)
            if kind == "events":
                return self.engine.on_event(decode(msg.data, Event, content_type), ingest, now)
        except DecodeError:
            # Ingest dead-letters it with the reason; here it is only counted.
            self.skipped += 1
        return []

    async def _timers(self) -> None:
        next_rules = 0.0
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), TICK_S)
            try:
                if time.monotonic() >= next_rules:
                    next_rules = time.monotonic() + RULES_EVERY_S
                    await self._refresh_rules()
                caught_up = all(self._caught_up.values())
                await self._emit(self.engine.tick(self.clock(), caught_up))
            except (asyncpg.PostgresError, OSError, NatsError, JetStreamError) as exc:
                log.error("timers: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    async def _refresh_rules(self) -> None:
        assert self._pool is not None
        version = await store.rules_version(self._pool)
        if version != self._rules_version:
            loaded = await store.load_rules(self._pool)
            self._rule_ids = {r.name: r.id for r in loaded}
            ended = self.engine.set_rules(loaded, self.clock())
            self._rules_version = version
            await self._emit(ended)
            log.info("%d alert rules enabled", len(self.engine.rules))

    async def _emit(self, changes: list[AlertChange]) -> None:
        if not changes:
            return
        assert self._pool is not None and self._js is not None
        # Changes of a rule deleted meanwhile have no row to belong to.
        ids = self._rule_ids
        changes = [c for c in changes if c.rule in ids]
        await store.save_states(self._pool, changes, ids)
        subjects = self.settings.subjects
        # Pipelined (one connection keeps their order): a group's changes reach the notifier
        # within one fetch instead of one PubAck apart.
        async with self._publish_lock:
            await asyncio.gather(
                *(
                    self._js.publish(
                        subjects.alerts(c.rule),
                        _change_encoder.encode(c),
                        headers={"Nats-Msg-Id": c.id},
                    )
                    for c in changes
                )
            )
        self.changes += len(changes)

    async def _republish(self) -> None:
        alerts = self.engine.alerts.values()
        await self._emit([self.engine.announce(a) for a in alerts if a.state is not None])

    # Notification ---------------------------------------------------------------------------

    def _inhibitors(self) -> set[str]:
        """Rules whose firing silences a host's other alerts: absence rules per host."""
        return {
            name
            for name, r in self.engine.rules.items()
            if r.rule.kind == "absence" and r.rule.by == "host"
        }

    async def _notify(self, sub: JetStreamContext.PullSubscription) -> None:
        assert self._pool is not None
        while not self._stopping.is_set():
            try:
                msgs = await _next(sub, 100, backlog=False)
            except (NatsTimeoutError, TimeoutError):
                continue
            except NatsError as exc:
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            changes: list[AlertChange] = []
            for msg in msgs:
                try:
                    changes.append(_change_decoder.decode(msg.data))
                except msgspec.DecodeError as exc:
                    # Not ours to retry: nothing could ever read it.
                    log.error("alert change on %s is unreadable: %s", msg.subject, exc)
            try:
                queued = await store.record(
                    self._pool, changes, self._inhibitors(), self.settings.alerts_group_wait_s
                )
            except (asyncpg.PostgresError, OSError) as exc:
                log.error("%d alert change(s) not recorded (%s); redelivered", len(changes), exc)
                await asyncio.sleep(1.0)
                continue
            if queued > 0:
                self._wake.set()
            await _ack_all(msgs)

    async def _send(self) -> None:
        outbox = self.outbox
        wait = self.settings.alerts_group_wait_s
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), OUTBOX_POLL_S)
            if self._wake.is_set():
                self._wake.clear()
                await asyncio.sleep(wait)
            try:
                while await outbox.send_due() and not self._stopping.is_set():
                    pass
            except (asyncpg.PostgresError, OSError) as exc:
                log.error("outbox: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    # Own metrics ------------------------------------------------------------------------------

    async def _report(self) -> None:
        assert self._js is not None
        publisher = Publisher(self._js, self.settings.subjects, max_buffered=100)
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.report_interval)
            if self._stopping.is_set():
                return
            await publisher.publish_batch(self.metrics())

    def metrics(self) -> MetricBatch:
        counts = self.outbox.counts
        active = [a for a in self.engine.alerts.values() if a.state is not None]
        samples = [
            Sample("alerts_rules", len(self.engine.rules)),
            Sample("alerts_active", sum(a.state == "firing" for a in active), {"state": "firing"}),
            Sample(
                "alerts_active", sum(a.state == "pending" for a in active), {"state": "pending"}
            ),
            Sample("alerts_evaluations_total", self.engine.evaluations, kind="counter"),
            Sample("alerts_changes_total", self.changes, kind="counter"),
            Sample("alerts_messages_skipped_total", self.skipped, kind="counter"),
            Sample("alerts_notifications_sent_total", counts.sent, kind="counter"),
            Sample("alerts_notifications_failed_total", counts.failed, kind="counter"),
            Sample("alerts_notifications_retried_total", counts.retried, kind="counter"),
        ]
        times, self.eval_seconds = sorted(self.eval_seconds), []
        if times:
            p99 = statistics.quantiles(times, n=100)[98] if len(times) > 1 else times[0]
            samples += [
                Sample("alerts_eval_seconds", statistics.median(times), {"quantile": "0.5"}, "s"),
                Sample("alerts_eval_seconds", p99, {"quantile": "0.99"}, "s"),
            ]
        ts = datetime.now(UTC)
        return MetricBatch(
            host=self.settings.host,
            plugin=PLUGIN,
            instance=self.name,
            ts=ts,
            seq=int(ts.timestamp() * 1000),
            samples=samples,
        )


async def _next(sub: JetStreamContext.PullSubscription, n: int, backlog: bool) -> list[Msg]:
    """nats-py's fetch(n) waits for all n until its timeout once one arrived: with a backlog
    fetch(n); caught up, fetch(1) and whatever else is there within FETCH_LINGER_S (as ingest
    does), so a change is evaluated within milliseconds of its arrival."""
    if backlog:
        return await sub.fetch(n, timeout=FETCH_WAIT_S)
    msgs = await sub.fetch(1, timeout=FETCH_WAIT_S)
    with contextlib.suppress(NatsTimeoutError, TimeoutError):
        msgs += await sub.fetch(n - 1, timeout=FETCH_LINGER_S)
    return msgs


async def _ack_all(msgs: list[Msg]) -> None:
    await asyncio.gather(*(m.ack() for m in msgs))
