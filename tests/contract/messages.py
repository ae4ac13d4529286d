"""The messages behind the golden files: one of each wire type, using every field."""

from __future__ import annotations

from datetime import UTC, datetime

from unity.schemas import (
    Event,
    HealthReport,
    MetricBatch,
    MetricInfo,
    PluginInfo,
    PluginSettings,
    Sample,
    WireMessage,
)

TS = datetime(2026, 11, 23, 12, 0, 0, 250000, tzinfo=UTC)

GOLDEN: dict[str, WireMessage] = {
    "metric_batch": MetricBatch(
        host="nas",
        plugin="ups",
        instance="rack",
        ts=TS,
        seq=1_795_435_200_250,
        samples=[
            Sample("ups_load_percent", 41.5, {"ups": "apc", "phase": "L1"}, "percent"),
            Sample("ups_output_wh", 1234.5, unit="wh", kind="counter", ts=1_795_435_199.5),
            Sample("ups_on_battery", 0.0),
        ],
    ),
    "health_report": HealthReport(
        host="nas",
        plugin="ups",
        instance="rack",
        ts=TS,
        status="degraded",
        message="on battery",
        duration_ms=12.5,
        samples=3,
    ),
    "event": Event(
        host="nas",
        plugin="ups",
        instance="rack",
        ts=TS,
        kind="power_lost",
        severity="warning",
        message="input power lost",
        data={"input_voltage": 0, "outlets": ["a", "b"], "nested": {"ok": False}},
    ),
    "plugin_info": PluginInfo(
        id="ups",
        name="UPS (NUT)",
        version="1.2.0",
        description="Charge, runtime and load of UPSes through NUT",
        author="Unity authors",
        category="power",
        tags=["ups", "nut"],
        metrics=[
            MetricInfo("ups_load_percent", "percent", "gauge", "Output load"),
            MetricInfo("ups_output_wh", "wh", "counter", "Energy delivered"),
        ],
        config_schema={"type": "object", "properties": {"server": {"type": "string"}}},
    ),
    "plugin_settings": PluginSettings(
        enabled=False, interval_s=30.0, config={"server": "127.0.0.1:3493"}, revision=7
    ),
}
