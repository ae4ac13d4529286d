"""The rule state machine with controlled time: for, hysteresis, windows, rates, absence judged
by ingest time (a replay of old data neither fires nor resolves), health runs, events, repeats,
and the same ids from two engines and across a restart."""

from __future__ import annotations

from typing import Any

from unity.ingest.alerts.engine import Engine, LoadedRule, Restored
from unity.schemas import Event, HealthReport, MetricBatch, Sample
from unity.schemas.alerts import DEFAULT_RULES, AlertChange, Rule

T0 = 1_800_000_000.0


def loaded(i: int = 1, **fields: Any) -> LoadedRule:
    rule = Rule(**fields)
    return LoadedRule(i, rule, rule.check())


def batch(
    t: float, value: float, name: str = "memory_used_percent", host: str = "nas", **labels: str
) -> MetricBatch:
    sample = Sample(name, value, labels, unit="percent")
    return MetricBatch(host=host, plugin="memory", ts=t, samples=[sample])


def states(changes: list[AlertChange]) -> list[str]:
    return [c.state + (f"/r{c.repeat}" if c.repeat else "") for c in changes]


MEMORY: dict[str, Any] = {
    "name": "mem",
    "expr": "memory_used_percent",
    "threshold": 90.0,
    "clear": 80.0,
}


def test_for_holds_then_fires_on_the_timer_and_hysteresis_resolves_only_past_clear() -> None:
    engine = Engine([loaded(**MEMORY, for_s=60.0, message="{host} at {value} > {threshold}")])
    assert engine.on_batch(batch(T0, 50), T0, T0) == []
    pending = engine.on_batch(batch(T0 + 10, 95), T0 + 10, T0 + 10)
    assert states(pending) == ["pending"]
    assert engine.tick(T0 + 69) == []
    fired = engine.tick(T0 + 70)
    assert states(fired) == ["firing"]
    assert fired[0].message == "nas at 95% > 90%"
    assert fired[0].id == f"mem:{pending[0].fingerprint}:{round((T0 + 10) * 1000)}:firing"
    # Between clear and threshold: still firing.
    assert engine.on_batch(batch(T0 + 80, 85), T0 + 80, T0 + 80) == []
    assert states(engine.on_batch(batch(T0 + 90, 79), T0 + 90, T0 + 90)) == ["resolved"]


def test_a_pending_alert_that_drops_below_the_threshold_never_fires() -> None:
    engine = Engine([loaded(**MEMORY, for_s=60.0)])
    engine.on_batch(batch(T0, 95), T0, T0)
    assert states(engine.on_batch(batch(T0 + 30, 85), T0 + 30, T0 + 30)) == ["resolved"]
    assert engine.tick(T0 + 100) == []


def test_windows_and_rates() -> None:
    rule = loaded(name="avg", expr="avg(memory_used_percent[1m])", threshold=90.0)
    engine = Engine([rule])
    assert engine.on_batch(batch(T0, 100), T0, T0)[0].state == "firing"
    # 100 and 90 average 95: still firing; with 40 the average is under 90: resolved.
    assert engine.on_batch(batch(T0 + 10, 90), T0 + 10, T0 + 10) == []
    assert states(engine.on_batch(batch(T0 + 20, 40), T0 + 20, T0 + 20)) == ["resolved"]

    counter = loaded(name="rx", expr="rate(rx_total)", threshold=100.0)
    engine = Engine([counter])
    assert engine.on_batch(batch(T0, 1000, "rx_total"), T0, T0) == []
    assert engine.on_batch(batch(T0 + 10, 1500, "rx_total"), T0 + 10, T0 + 10) == []  # 50/s
    fired = engine.on_batch(batch(T0 + 20, 3500, "rx_total"), T0 + 20, T0 + 20)  # 200/s
    assert states(fired) == ["firing"] and fired[0].value == 200.0
    # A counter reset counts from zero: 100/10 = 10/s.
    assert states(engine.on_batch(batch(T0 + 30, 100, "rx_total"), T0 + 30, T0 + 30)) == [
        "resolved"
    ]


def test_division_by_a_metric_of_the_same_host() -> None:
    engine = Engine([loaded(name="load", expr="cpu_load5 / cpu_cores_logical", threshold=2.0)])
    both = MetricBatch(
        host="nas",
        plugin="cpu",
        ts=T0,
        samples=[Sample("cpu_cores_logical", 4), Sample("cpu_load5", 10.0)],
    )
    fired = engine.on_batch(both, T0, T0)
    assert states(fired) == ["firing"] and fired[0].value == 2.5


def test_old_data_arriving_now_neither_fires_a_threshold_nor_an_absence_change() -> None:
    engine = Engine([loaded(**MEMORY)])
    # Measured an hour ago, ingested now (a spool draining, an import): ignored.
    assert engine.on_batch(batch(T0 - 3600, 99), T0, T0) == []


ABSENCE: dict[str, Any] = {
    "name": "silent",
    "expr": '{plugin="memory"}',
    "kind": "absence",
    "by": "host",
}


def test_absence_is_judged_by_ingest_time_and_a_replay_of_old_data_resolves_nothing() -> None:
    engine = Engine([loaded(**ABSENCE, for_s=60.0)])
    engine.on_batch(batch(T0, 50), T0, T0)
    assert engine.tick(T0 + 59) == []
    # A backlog is not a silence: nothing fires while the stream is not caught up.
    assert engine.tick(T0 + 100, caught_up=False) == []
    fired = engine.tick(T0 + 100)
    assert states(fired) == ["firing"] and fired[0].labels["host"] == "nas"
    # Old data re-published now (a replay): still silent.
    assert engine.on_batch(batch(T0 - 600, 50), T0 + 120, T0 + 120) == []
    assert engine.tick(T0 + 130) == []
    # Fresh data: resolved.
    assert states(engine.on_batch(batch(T0 + 140, 50), T0 + 140, T0 + 140)) == ["resolved"]
    assert engine.tick(T0 + 150) == []


def test_absence_starts_from_the_catalogue_for_sources_not_seen_since_the_start() -> None:
    engine = Engine([loaded(**ABSENCE, for_s=60.0)])
    engine.watch("pi", "memory", "", T0)
    engine.watch("pi", "disk", "", T0)  # not matched by the rule
    assert states(engine.tick(T0 + 61)) == ["firing"]


def test_health_runs_and_events() -> None:
    engine = Engine(
        [
            loaded(1, name="failing", expr="", kind="health", runs=3),
            loaded(2, name="ups", expr='{kind="on_battery"}', kind="event", hold_s=600.0),
        ]
    )

    def run(t: float, status: str) -> list[AlertChange]:
        report = HealthReport(host="nas", plugin="ups", status=status, ts=t)  # type: ignore[arg-type]
        return engine.on_health(report, t, t)

    assert run(T0, "error") == [] and run(T0 + 10, "error") == []
    assert states(run(T0 + 20, "error")) == ["firing"]
    assert run(T0 + 30, "error") == []
    assert states(run(T0 + 40, "ok")) == ["resolved"]

    event = Event(host="nas", plugin="nut", kind="on_battery", message="UPS on battery", ts=T0)
    fired = engine.on_event(event, T0, T0)
    assert states(fired) == ["firing"] and "UPS on battery" in fired[0].message
    assert engine.on_event(event, T0 + 5, T0 + 5) == []
    assert engine.tick(T0 + 600) == []
    assert states(engine.tick(T0 + 605)) == ["resolved"]


def test_reminders_while_firing() -> None:
    engine = Engine([loaded(**MEMORY, repeat_s=3600.0)])
    engine.on_batch(batch(T0, 95), T0, T0)
    assert engine.tick(T0 + 3599) == []
    reminder = engine.tick(T0 + 3600)
    assert states(reminder) == ["firing/r1"] and reminder[0].id.endswith(":firing:r1")
    assert engine.tick(T0 + 3700) == []


def test_two_engines_compute_the_same_ids_and_a_restored_one_continues_the_episode() -> None:
    rule = loaded(**MEMORY, for_s=60.0)
    a, b = Engine([rule]), Engine([rule])
    # Different wall clocks, same data.
    first = a.on_batch(batch(T0, 95), T0, T0 + 0.2) + a.tick(T0 + 61)
    second = b.on_batch(batch(T0, 95), T0, T0 + 0.9) + b.tick(T0 + 62)
    assert [c.id for c in first] == [c.id for c in second]

    pending = Engine([rule]).on_batch(batch(T0, 95), T0, T0)[0]
    restarted = Engine([rule])
    restarted.restore(
        [
            Restored(
                "mem",
                pending.fingerprint,
                pending.episode,
                "pending",
                T0,
                pending.labels,
                95.0,
                "percent",
                0,
            )
        ]
    )
    # The restarted engine sees a new sample (its window is empty) and fires the same episode.
    assert restarted.on_batch(batch(T0 + 30, 96), T0 + 30, T0 + 30) == []
    fired = restarted.tick(T0 + 60)
    assert [c.id for c in fired] == [first[1].id]


def test_a_changed_or_switched_off_rule_resolves_its_alerts() -> None:
    engine = Engine([loaded(**MEMORY)])
    engine.on_batch(batch(T0, 95), T0, T0)
    assert engine.set_rules([loaded(**MEMORY)], T0 + 1) == []  # unchanged: kept
    tuned = engine.set_rules([loaded(**{**MEMORY, "threshold": 99.0})], T0 + 2)
    assert states(tuned) == ["resolved"] and tuned[0].ts == T0 + 2
    # Under the new threshold 95 does not fire again.
    assert engine.on_batch(batch(T0 + 3, 95), T0 + 3, T0 + 3) == []
    engine.on_batch(batch(T0 + 4, 99.5), T0 + 4, T0 + 4)
    off = engine.set_rules([loaded(**{**MEMORY, "threshold": 99.0, "enabled": False})], T0 + 5)
    assert states(off) == ["resolved"] and engine.rules == {}


def test_default_rules_fire_on_collector_shaped_data_with_every_placeholder_filled() -> None:
    engine = Engine([LoadedRule(i, r, r.check()) for i, r in enumerate(DEFAULT_RULES)])
    disk_labels = {"mount": "/srv", "device": "/dev/sda1", "fstype": "ext4"}
    batches = [
        MetricBatch(
            host="nas",
            plugin="disk",
            ts=T0,
            samples=[
                Sample("disk_used_percent", 98.0, disk_labels, "percent"),
                Sample("disk_inodes_used", 95.0, disk_labels),
                Sample("disk_inodes_total", 100.0, disk_labels),
            ],
        ),
        MetricBatch(
            host="nas",
            plugin="sensors",
            ts=T0,
            samples=[
                Sample(
                    "sensors_temperature_celsius",
                    91.5,
                    {"chip": "coretemp-isa-0000", "sensor": "Package id 0"},
                    "celsius",
                )
            ],
        ),
    ]
    changes = [c for b in batches for c in engine.on_batch(b, T0, T0)]
    changes += engine.tick(T0 + 301)
    fired = {c.rule: c.message for c in changes if c.state == "firing"}
    assert set(fired) == {"disk_space", "disk_space_critical", "inodes", "temperature"}
    assert fired["disk_space"] == "nas: disk /srv is 98% full"
    assert fired["temperature"] == "nas: coretemp-isa-0000 Package id 0 at 91.5 °C"
    assert fired["inodes"] == "nas: /srv uses 0.95 of its inodes (threshold 0.9)"
    assert not any("{" in m for m in fired.values())


def test_min_and_max_windows_follow_points_in_and_out() -> None:
    low = loaded(1, name="low", expr="min(memory_used_percent[30s])", threshold=50.0)
    high = loaded(2, name="high", expr="max(memory_used_percent[30s])", threshold=90.0)
    engine = Engine([low, high])
    seen: dict[str, list[float | None]] = {"low": [], "high": []}
    for i, value in enumerate([60.0, 95.0, 70.0, 40.0, 80.0, 85.0, 75.0]):
        t = T0 + 10 * i
        engine.on_batch(batch(t, value), t, t)
        for alert in engine.alerts.values():
            seen[alert.rule.name].append(alert.value)
    # The window holds the points of the last 30 s: this one and the two before it.
    assert seen["low"] == [60.0, 60.0, 60.0, 40.0, 40.0, 40.0, 75.0]
    assert seen["high"] == [60.0, 95.0, 95.0, 95.0, 80.0, 85.0, 85.0]
