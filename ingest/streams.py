"""Streams and the durable ingest consumers, created or updated explicitly at start."""

from __future__ import annotations

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

from compose.settings import Settings

DURABLE = "ingest"


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
    for config in stream_configs(settings):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)


def consumer_config(settings: Settings, filter_subject: str) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=DURABLE,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ingest_ack_wait_s,
        # The default of 1000 silently stalls large fetches (DESIGN §10).
        max_ack_pending=settings.ingest_max_ack_pending,
        max_deliver=-1,
        filter_subject=filter_subject,
        max_waiting=512,
    )


async def ensure_consumers(js: JetStreamContext, settings: Settings) -> None:
    root = settings.subjects.root
    await js.add_consumer(
        settings.subjects.metrics_stream, consumer_config(settings, f"{root}.metrics.>")
    )
    await js.add_consumer(settings.subjects.events_stream, consumer_config(settings, f"{root}.>"))
