"""Streams and the durable ingest consumers, created or updated explicitly at start."""

from __future__ import annotations

import logging
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from unity.schemas.storage import DURABLE
from unity.sdk.settings import Settings

log = logging.getLogger(__name__)


def stream_configs(settings: Settings) -> list[StreamConfig]:
    subjects = settings.subjects
    root = subjects.root
    common = {
        # Limits, never work-queue: replay and second readers need the data.
        "retention": RetentionPolicy.LIMITS,
        "storage": StorageType.FILE,
        "discard": DiscardPolicy.OLD,
        "num_replicas": settings.stream_replicas,
        "duplicate_window": settings.stream_duplicate_window_s,
        "max_bytes": settings.stream_max_bytes,
    }
    return [
        StreamConfig(
            name=subjects.metrics_stream,
            subjects=[f"{root}.metrics.>", f"{root}.lp.>"],
            max_age=settings.stream_max_age_s,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=subjects.events_stream,
            subjects=[f"{root}.events.>", f"{root}.health.>", f"{root}.alerts.>"],
            max_age=settings.stream_max_age_s,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=subjects.dlq_stream,
            subjects=[f"{root}.dlq.>"],
            max_age=max(settings.stream_max_age_s, 30 * 86400.0),
            **common,  # type: ignore[arg-type]
        ),
    ]


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    """Create the streams, or update them to the settings without lowering what an operator
    raised: more replicas, a longer max age or a larger size limit set by hand are kept (with
    a warning), so a default ingest start cannot turn R3 streams back into R1."""
    for config in stream_configs(settings):
        assert config.name is not None
        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            continue
        for key in ("num_replicas", "max_age", "max_bytes"):
            ours, theirs = getattr(config, key), getattr(info.config, key)
            if _raised(key, theirs, ours):
                log.warning(
                    "stream %s has %s %s, more than the settings' %s: kept as it is",
                    config.name,
                    key,
                    theirs,
                    ours,
                )
                setattr(config, key, theirs)
        await js.update_stream(config)


# How JetStream spells "no limit" for the limits an operator may raise.
_UNLIMITED = {"max_age": 0, "max_bytes": -1}


def _raised(key: str, theirs: float | None, ours: float | None) -> bool:
    """Whether the stream's ``theirs`` is above the settings' ``ours``."""
    if theirs is None or ours is None:
        return False
    unlimited = _UNLIMITED.get(key)
    if unlimited is not None and ours == unlimited:
        return False
    return theirs == unlimited or theirs > ours


def ingest_filters(settings: Settings) -> dict[str, list[str]]:
    """What the ingest consumer reads from each stream (alerts are not ingest's to store)."""
    subjects = settings.subjects
    root = subjects.root
    return {
        subjects.metrics_stream: [f"{root}.metrics.>", f"{root}.lp.>"],
        subjects.events_stream: [f"{root}.events.>", f"{root}.health.>"],
    }


def intersect(a: str, b: str) -> str | None:
    """The subjects matched by both filters, as one filter; None when they share none.

    Token by token the narrower wins (a literal over ``*``, anything over ``>``); where one
    ends in ``>`` the rest of the other follows, since ``>`` stands for one token or more.
    """
    left, right = a.split("."), b.split(".")
    out: list[str] = []
    for i, (x, y) in enumerate(zip(left, right, strict=False)):
        if x == ">":
            return ".".join(out + right[i:])
        if y == ">":
            return ".".join(out + left[i:])
        if x != y and "*" not in (x, y):
            return None
        out.append(y if x == "*" else x)
    return ".".join(out) if len(left) == len(right) else None


def replay_filters(settings: Settings, subject_filter: str | None) -> dict[str, list[str]]:
    """Per ingest stream, the part of ``subject_filter`` that ingest reads (streams with none
    are left out): a broad ``unity.>`` must not read alerts, which are not ingest's."""
    streams: dict[str, list[str]] = {}
    for stream, filters in ingest_filters(settings).items():
        if subject_filter is None:
            streams[stream] = filters
            continue
        narrowed = [both for f in filters if (both := intersect(f, subject_filter))]
        if narrowed:
            # The ingest filters do not overlap, nor do their parts: JetStream would refuse that.
            streams[stream] = list(dict.fromkeys(narrowed))
    return streams


def stream_for(settings: Settings, subject_filter: str) -> list[str]:
    """The ingest streams whose subjects a filter like ``unity.metrics.h1.>`` can match."""
    return list(replay_filters(settings, subject_filter))


def consumer_config(settings: Settings, filter_subjects: list[str]) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=DURABLE,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        # Longer than the slowest commit; batches that take long also send in_progress().
        ack_wait=settings.ingest_ack_wait_s,
        # The default of 1000 silently stalls large fetches (DESIGN §10).
        max_ack_pending=settings.ingest_max_ack_pending,
        # A message that keeps failing (or kills its worker) stops coming back after this many
        # deliveries; ingest dead-letters it on the server's advisory (ingest.service).
        max_deliver=settings.ingest_max_deliver,
        filter_subjects=filter_subjects,
        max_waiting=512,
    )


def max_deliveries_subject(stream: str) -> str:
    """Where the server announces a message of ``stream`` that reached max_deliver."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{DURABLE}"


async def ensure_consumers(js: JetStreamContext, settings: Settings) -> None:
    """Create the durable consumers, or update an existing one to this exact config."""
    for stream, filters in ingest_filters(settings).items():
        await js.add_consumer(stream, consumer_config(settings, filters))


def replay_config(
    since: datetime, subject_filter: str | None, settings: Settings, stream: str
) -> ConsumerConfig:
    """A temporary consumer that starts at ``since``; the server removes it when idle."""
    filters = replay_filters(settings, subject_filter)[stream]
    return ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=since,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ingest_ack_wait_s,
        max_ack_pending=settings.ingest_max_ack_pending,
        filter_subjects=filters,
        inactive_threshold=300.0,
        mem_storage=True,
    )
