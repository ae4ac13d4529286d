"""Alert rules without I/O: expressions, matchers, durations, units, templates, windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from unity.ingest.alerts.sender import scrub
from unity.ingest.alerts.store import RuleFileError, read_rule_file
from unity.schemas.alerts import (
    DEFAULT_RULES,
    Expression,
    Rule,
    RuleError,
    format_value,
    in_window,
    parse_duration,
    parse_expression,
    parse_selector,
    redact_url,
    render,
)


def test_expressions_parse_into_selector_rate_window_and_divisor() -> None:
    e = parse_expression('max(rate(net_rx_bytes_total{nic="eth0", host=~"nas.*"})[5m]) / x')
    assert e.rate and e.window is not None and e.divisor == "x"
    assert (e.window.function, e.window.seconds) == ("max", 300.0)
    assert e.selector.matches({"name": "net_rx_bytes_total", "nic": "eth0", "host": "nas1"})
    assert not e.selector.matches({"name": "net_rx_bytes_total", "nic": "eth0", "host": "pi"})
    plain = parse_expression("disk_used_percent")
    assert (
        plain == Expression(plain.selector) and plain.selector.equal("name") == "disk_used_percent"
    )
    # A missing label equals the empty string, as in /query.
    assert parse_selector('{mount!="/boot"}').matches({"name": "x"})


@pytest.mark.parametrize(
    ("text", "position", "what"),
    [
        ("avg(cpu{a=1}[5m])", 10, "quoted value"),
        ("avg(cpu[5x])", 8, "duration"),
        ("avg(cpu)", 7, "expected '['"),
        ('cpu{host="a"', 12, "missing '}'"),
        ('cpu{host=~"("}', 10, "bad regex"),
        ("cpu / ", 6, "metric name after '/'"),
        ("cpu extra", 4, "unexpected 'e'"),
        ("avg(cpu[2d])", 8, "at most"),
    ],
)
def test_a_bad_expression_names_the_position(text: str, position: int, what: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_expression(text)
    assert caught.value.position == position
    assert f"position {position}" in str(caught.value) and what in str(caught.value)


def test_durations() -> None:
    assert parse_duration("90") == 90.0
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("250ms") == 0.25
    with pytest.raises(RuleError):
        parse_duration("5 minutes")


def test_values_are_formatted_in_their_unit() -> None:
    assert format_value(93.24, "percent") == "93.24%"
    assert format_value(71.5, "celsius") == "71.5 °C"
    assert format_value(1.5 * 1024**3, "bytes") == "1.5 GiB"
    assert format_value(512, "bytes") == "512 B"
    assert format_value(3 * 3600 + 300, "seconds") == "3h 5m"
    assert format_value(0.1234, "") == "0.123"
    assert format_value(None, "percent") == "no value"


def test_templates_fill_plain_names_only() -> None:
    fields = {"host": "nas", "value": "93%", "mount": "/"}
    assert render("{host}: {mount} at {value} ({nope})", fields) == "nas: / at 93% ({nope})"
    # No attribute or index access: a template cannot reach into Python objects.
    assert render("{value.__class__}{host[0]}", fields) == "{value.__class__}{host[0]}"


def test_hysteresis_and_the_side_of_the_clear_threshold() -> None:
    rule = Rule(name="m", expr="memory_used_percent", threshold=90, clear=85)
    assert rule.breached(91) and not rule.cleared(88) and rule.cleared(84.9)
    below = Rule(name="b", expr="x", op="<", threshold=10, clear=20)
    assert below.breached(5) and not below.cleared(15) and below.cleared(25)
    with pytest.raises(RuleError, match="clear"):
        Rule(name="w", expr="x", threshold=90, clear=95).check()
    with pytest.raises(RuleError, match="for_s"):
        Rule(name="a", expr='{host="x"}', kind="absence").check()


def test_the_default_pack_parses_and_every_rule_is_switchable() -> None:
    names = [r.name for r in DEFAULT_RULES]
    assert len(names) == len(set(names))
    for rule in DEFAULT_RULES:
        rule.check()
        assert rule.enabled
        off = msgspec.structs.replace(rule, enabled=False)
        assert msgspec.json.decode(msgspec.json.encode(off), type=Rule) == off
    assert {"host_silent", "disk_space", "memory", "temperature", "plugin_failing"} <= set(names)


def test_rule_files_refuse_unknown_keys_with_their_path(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[rule]]\nname = "hot"\nexpr = "avg(t[1m])"\nthreshold = 80\n')
    assert [r.name for r in read_rule_file(good)] == ["hot"]
    typo = tmp_path / "typo.toml"
    typo.write_text('[[rule]]\nname = "hot"\nexpr = "t"\ntreshold = 80\n')
    with pytest.raises(RuleFileError, match=r"treshold.*\$\.rule\[0\]"):
        read_rule_file(typo)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "hot"\nexpr = "avg(t[1m]"\n')
    with pytest.raises(RuleFileError, match=r"rule 'hot'.*position 9"):
        read_rule_file(bad)


def test_maintenance_windows_once_daily_weekly() -> None:
    start = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    hour = 3600.0
    assert in_window(start + timedelta(minutes=30), start, hour, "once")
    assert not in_window(start + timedelta(days=1, minutes=30), start, hour, "once")
    assert in_window(start + timedelta(days=1, minutes=30), start, hour, "daily")
    assert not in_window(start + timedelta(days=1, hours=2), start, hour, "daily")
    assert not in_window(start + timedelta(days=1, minutes=30), start, hour, "weekly")
    assert in_window(start + timedelta(days=14, minutes=59), start, hour, "weekly")
    assert not in_window(start - timedelta(minutes=1), start, hour, "daily")


def test_channel_urls_and_errors_never_show_secrets() -> None:
    url = "ntfys://alice:s3cretpw@ntfy.example.net/private-topic?token=tk_abcdef"
    shown = redact_url(url)
    assert shown == "ntfys://***@ntfy.example.net/***"
    assert redact_url("discord://1234/abcdtoken") == "discord://1234/***"
    error = "Failed to send to ntfy.example.net/private-topic as alice with tk_abcdef"
    cleaned = scrub(error, url)
    assert "private-topic" not in cleaned and "tk_abcdef" not in cleaned and "alice" not in cleaned
