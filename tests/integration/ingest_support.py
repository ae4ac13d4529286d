"""Helpers of the ingest tests: publish known data, run ingest as a real process, check storage."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from tests.servers import Env
from unity.ingest.streams import ensure_consumers, ensure_streams
from unity.schemas import HealthReport, MetricBatch, Sample, encode
from unity.schemas.storage import DURABLE
from unity.sdk.connection import connect_nats
from unity.sdk.settings import Endpoints

# An hour ago, whole seconds: inside the partitions that exist, never in the future.
BASE_TS = float(int(time.time()) - 3600)


@dataclass(frozen=True)
class Published:
    messages: int
    samples: int
    value_sum: float
    health: int


async def publish_batches(
    js: JetStreamContext,
    env: Env,
    messages: int,
    per_message: int = 100,
    *,
    hosts: int = 5,
    start: int = 0,
    ts: float | None = None,
) -> Published:
    """``messages`` batches of distinct samples (value = message * 1000 + index), plus one
    health report per host for every tenth message; each batch has its own Msg-Id."""
    subjects = env.settings.subjects
    value_sum = 0.0
    health = 0
    acks = []
    for m in range(start, start + messages):
        host = f"h{m % hosts}"
        samples = [
            Sample("load", float(m * 1000 + i), {"slot": str(i)}, "percent")
            for i in range(per_message)
        ]
        value_sum += sum(s.value for s in samples)
        batch_ts = (ts if ts is not None else BASE_TS) + m
        batch = MetricBatch(host=host, plugin="loadgen", ts=batch_ts, seq=m, samples=samples)
        acks.append(
            js.publish(
                subjects.metrics(host, "loadgen"),
                encode(batch),
                headers={"Nats-Msg-Id": f"{host}:loadgen::{m}"},
            )
        )
        if m % 10 == 0:
            report = HealthReport(
                host=host, plugin="loadgen", status="ok", ts=batch_ts, samples=per_message
            )
            acks.append(js.publish(subjects.health(host, "loadgen"), encode(report)))
            health += 1
        if len(acks) >= 200:
            await asyncio.gather(*acks)
            acks = []
    await asyncio.gather(*acks)
    return Published(messages, messages * per_message, value_sum, health)


async def streams_ready(env: Env) -> tuple[NATS, JetStreamContext]:
    """A NATS connection with this test's streams and ingest consumers in place."""
    nc = await connect_nats(env.ep, "test")
    js = nc.jetstream()
    try:
        await ensure_streams(js, env.settings)
        await ensure_consumers(js, env.settings)
    except BaseException:
        # Callers retry while a cluster forms: a connection left open would be collected
        # later, in another test, as a "loop is closed" warning.
        await nc.close()
        raise
    return nc, js


async def dlq_size(js: JetStreamContext, env: Env) -> int:
    """Entries in this test's dead-letter stream."""
    info = await js.stream_info(env.settings.subjects.dlq_stream)
    return info.state.messages


async def consumers(js: JetStreamContext, env: Env) -> list[ConsumerInfo]:
    """The durable ingest consumer on the metrics and the events stream."""
    subjects = env.settings.subjects
    return [
        await js.consumer_info(stream, DURABLE)
        for stream in (subjects.metrics_stream, subjects.events_stream)
    ]


async def fetchval(env: Env, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def stored(env: Env, plugin: str | None = None) -> int:
    """Rows in samples, or only those of one plugin's series."""
    if plugin is None:
        value = await fetchval(env, "SELECT count(*) FROM samples")
    else:
        value = await fetchval(
            env,
            "SELECT count(*) FROM samples WHERE series_id IN"
            " (SELECT id FROM series WHERE plugin = $1)",
            plugin,
        )
    assert isinstance(value, int)
    return value


async def assert_exactly(env: Env, published: Published) -> None:
    """Every published sample is stored once: right count, right sum, no (series, time) twice."""
    conn = await asyncpg.connect(env.ep.database_url, password=env.ep.database_password)
    try:
        row = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT (series_id, time)), sum(value) FROM samples"
        )
    finally:
        await conn.close()
    assert row is not None
    assert tuple(row.values()) == (published.samples, published.samples, published.value_sum)
    runs = await fetchval(env, "SELECT count(*) FROM plugin_runs WHERE plugin = 'loadgen'")
    assert runs == published.health


def unity_env(env: Env, data_dir: Path, **settings: str) -> dict[str, str]:
    """Environment of a `python -m compose ...` child on this test's servers and root."""
    return child_env(env.ep, env.root, data_dir, host_name="testhost", **settings)


def child_env(ep: Endpoints, root: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """``UNITY_*`` variables for a child on these servers; passwords in variables, not URLs."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("UNITY_")}
    child.update(
        UNITY_NATS_URL=ep.nats_url,
        UNITY_DATABASE_URL=ep.database_url,
        UNITY_VALKEY_URL=ep.valkey_url,
        UNITY_SUBJECT_ROOT=root,
        UNITY_DATA_DIR=str(data_dir),
    )
    for name, value in (
        ("UNITY_NATS_USER", ep.nats_user),
        ("UNITY_NATS_PASSWORD", ep.nats_password),
        ("UNITY_DATABASE_PASSWORD", ep.database_password),
        ("UNITY_VALKEY_PASSWORD", ep.valkey_password),
    ):
        if value:
            child[name] = value
    child.update({f"UNITY_{k.upper()}": v for k, v in settings.items()})
    return child


class Unity:
    """`python -m compose <args>` as a child process with its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "unity.compose", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")
