"""The Plugin base, its config, the runner's reporting and the test helpers, without servers."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import msgspec
import pytest

from unity.schemas import PluginInfo, decode, encode
from unity.sdk import ConfigError, Health, Metric, Plugin, Sink
from unity.sdk.check import check, check_metadata
from unity.sdk.runner import collect_once
from unity.sdk.sink import MAX_EVENTS
from unity.sdk.testing import MemorySink, collect, run


class UpsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    server: str = "127.0.0.1:3493"
    ups: list[str] = []
    timeout_s: float = 2.0


class Ups(Plugin):
    id = "ups"
    name = "UPS"
    version = "1.0.0"
    description = "Load and charge of UPSes"
    author = "tests"
    category = "power"
    tags = ("ups",)
    Config = UpsConfig
    metrics = (
        Metric("ups_load_percent", "percent", "gauge", "Output load"),
        Metric("ups_output_wh", "wh", "counter", "Energy delivered"),
    )

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self.state: Health | None = None
        self.fail: BaseException | None = None
        self.labels: dict[str, str] = {"ups": "apc"}

    def collect(self, sink: Sink) -> None:
        if self.fail is not None:
            raise self.fail
        sink.add("ups_load_percent", 41, self.labels)
        sink.add("ups_output_wh", 1234.5, self.labels)

    def health(self) -> Health | None:
        return self.state


def test_config_from_plain_data_is_typed_and_unknown_keys_are_named() -> None:
    config = Ups.parse_config({"server": "nut:3493", "ups": ["a", "b"]})
    assert config == UpsConfig(server="nut:3493", ups=["a", "b"])
    with pytest.raises(ConfigError, match="unknown key 'sever'"):
        Ups.parse_config({"sever": "x"})
    with pytest.raises(ConfigError, match=r"\$\.timeout_s"):
        Ups.parse_config({"timeout_s": "soon"})


def test_config_file_errors_name_the_file_or_the_key(tmp_path: Path) -> None:
    good = tmp_path / "ups.toml"
    good.write_text('server = "10.0.0.2:3493"\nups = ["rack"]\n')
    assert Ups.load_config(good) == UpsConfig("10.0.0.2:3493", ["rack"])
    bad = tmp_path / "bad.toml"
    bad.write_text("server = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        Ups.load_config(bad)
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        Ups.load_config(tmp_path / "missing.toml")


def test_a_config_of_the_wrong_type_is_refused() -> None:
    class Other(msgspec.Struct):
        x: int = 1

    with pytest.raises(TypeError, match="UpsConfig"):
        Ups(Other())


def test_info_carries_metadata_metrics_and_config_schema() -> None:
    info = Ups.info()
    assert (info.id, info.version, info.category, info.tags) == ("ups", "1.0.0", "power", ["ups"])
    assert [(m.name, m.kind) for m in info.metrics] == [
        ("ups_load_percent", "gauge"),
        ("ups_output_wh", "counter"),
    ]
    props = info.config_schema["$defs"]["UpsConfig"]["properties"]
    assert props["server"] == {"type": "string", "default": "127.0.0.1:3493"}
    assert decode(encode(info), PluginInfo) == info


async def test_a_good_run_is_a_batch_and_an_ok_report() -> None:
    result = await collect_once(Ups(instance="rack"), "nas", 5.0)
    assert result.batch is not None and result.report.status == "ok"
    assert result.batch.instance == "rack" and result.report.samples == 2
    assert [s.unit for s in result.batch.samples] == ["percent", "wh"]
    assert result.seq == pytest.approx(time.time() * 1000, abs=60_000)


async def test_a_failing_collect_becomes_an_error_report_never_data() -> None:
    plugin = Ups()
    plugin.fail = ConnectionRefusedError("upsd is down")
    result = await collect_once(plugin, "nas", 5.0)
    assert result.batch is None
    assert (result.report.status, result.report.samples) == ("error", 0)
    assert result.report.message == "ConnectionRefusedError: upsd is down"


async def test_a_hanging_collect_times_out_into_an_error_report() -> None:
    class Slow(Ups):
        def collect(self, sink: Sink) -> None:
            time.sleep(0.5)

    result = await collect_once(Slow(), "nas", 0.05)
    assert result.report.status == "error" and "timed out" in result.report.message


async def test_plugin_health_degrades_the_report_but_keeps_the_data() -> None:
    plugin = Ups()
    plugin.state = Health("degraded", "on battery")
    result = await run(plugin)
    assert (result.report.status, result.report.message) == ("degraded", "on battery")
    assert result.batch is not None and len(result.batch.samples) == 2


def test_memory_sink_answers_by_name_and_labels() -> None:
    sink = collect(Ups())
    assert isinstance(sink, MemorySink)
    assert sink.names() == {"ups_load_percent", "ups_output_wh"}
    assert sink.value("ups_load_percent", {"ups": "apc"}) == 41.0
    with pytest.raises(LookupError, match="0 samples"):
        sink.value("ups_load_percent", {"ups": "other"})


def test_check_passes_a_good_plugin() -> None:
    assert check(Ups) == []


def test_check_names_every_metadata_problem() -> None:
    class Sloppy(Plugin):
        id = "Bad Id"
        version = "one"
        metrics = (
            Metric("ok_metric", "s"),
            Metric("ok_metric", "s"),
            Metric("9bad", "s"),
            Metric("wordy", "seconds since the epoch, measured by a clock on the wall" * 2),
        )

        def collect(self, sink: Sink) -> None:
            sink.add("ok_metric", 1)

    errors = {(f.what, f.message.split(" ")[0]) for f in check(Sloppy) if f.level == "error"}
    assert ("id", "'Bad") in errors
    assert ("version", "'one'") in errors
    assert ("name", "is") in errors and ("description", "is") in errors
    assert ("metric 'ok_metric'", "declared") in errors
    assert any(what == "metric '9bad'" for what, _ in errors)
    assert ("metric 'wordy'", "unit") in errors


def test_check_runs_collect_and_applies_the_wire_limits() -> None:
    class Leaky(Ups):
        def collect(self, sink: Sink) -> None:
            sink.add("ups_load_percent", math.nan)
            sink.add("ups_output_wh", 1.0, {"bad label": "x"})

    found = [str(f) for f in check(Leaky)]
    assert found == [
        "error: sample 0 (ups_load_percent): value nan is not finite",
        "error: sample 1 (ups_output_wh): label name 'bad label' is not allowed",
    ]


def test_check_reports_a_failing_collect() -> None:
    class Broken(Ups):
        def collect(self, sink: Sink) -> None:
            raise PermissionError("/dev/ups0")

    assert [str(f) for f in check(Broken)] == ["error: collect: PermissionError: /dev/ups0"]


class Lenient(msgspec.Struct, frozen=True):
    x: int = 1


class Port(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    number: int
    proto: str = "tcp"


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    ports: list[Port] = []


class Tagged(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="file"):
    path: str


class Nested(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    inner: Target = Target("localhost")
    targets: list[Target] = []
    by_name: dict[str, Target] = {}
    optional: Target | None = None
    source: Tagged | None = None
    loose: Lenient = Lenient()


def metadata_plugin(config: type[msgspec.Struct]) -> type[Plugin]:
    class P(Plugin):
        id = "configured"
        name = "Configured"
        description = "takes a config"
        author = "tests"
        Config = config
        metrics = (Metric("x", "", "gauge", "x"),)

        def collect(self, sink: Sink) -> None:
            sink.add("x", 1)

    return P


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"inner": {"hots": "x"}}, "inner.hots"),
        (
            {"inner": {"host": "a", "ports": [{"number": 1}, {"number": 2, "prot": "udp"}]}},
            "inner.ports[1].prot",
        ),
        ({"targets": [{"host": "a"}, {"host": "b", "port": 1}]}, "targets[1].port"),
        ({"by_name": {"web": {"host": "a", "hots": "b"}}}, "by_name.web.hots"),
        ({"optional": {"host": "a", "extra": 1}}, "optional.extra"),
        ({"source": {"type": "file", "path": "/x", "mode": "r"}}, "source.mode"),
        ({"loose": {"x": 2, "y": 3}}, "loose.y"),
        ({"inner": {"host": "a"}, "innr": {}}, "innr"),
    ],
)
def test_unknown_keys_in_nested_config_structs_are_named_with_their_path(
    raw: dict[str, object], path: str
) -> None:
    plugin = metadata_plugin(Nested)
    with pytest.raises(ConfigError, match=f"unknown key '{re.escape(path)}'"):
        plugin.parse_config(raw)


def test_a_nested_config_with_known_keys_is_parsed() -> None:
    raw = {
        "inner": {"host": "a", "ports": [{"number": 1, "proto": "udp"}]},
        "targets": [{"host": "b"}],
        "by_name": {"web": {"host": "c"}},
        "optional": None,
        "source": {"type": "file", "path": "/x"},
        "loose": {"x": 2},
    }
    config = metadata_plugin(Nested).parse_config(raw)
    assert config == Nested(
        inner=Target("a", [Port(1, "udp")]),
        targets=[Target("b")],
        by_name={"web": Target("c")},
        source=Tagged("/x"),
        loose=Lenient(2),
    )


def test_check_metadata_flags_every_config_struct_that_accepts_unknown_keys() -> None:
    top = [str(f) for f in check_metadata(metadata_plugin(Lenient))]
    assert top == [
        "error: Config: Lenient accepts unknown keys: declare it with forbid_unknown_fields=True"
    ]
    nested = [
        (f.level, f.what, f.message.split()[0]) for f in check_metadata(metadata_plugin(Nested))
    ]
    assert nested == [("error", "Config", "Lenient")]
    assert check_metadata(metadata_plugin(Target)) == []


class Inventory(Ups):
    """Adds two events next to its samples, then fails when told to."""

    def collect(self, sink: Sink) -> None:
        sink.add("ups_load_percent", 41, self.labels)
        sink.event("ups_inventory", "1 UPS", {"models": ["Back-UPS 700"]})
        sink.event("power_lost", "on battery", severity="warning")
        if self.fail is not None:
            raise self.fail


def test_sink_events_are_checked_and_their_data_copied() -> None:
    sink = Sink(Ups.declared())
    data = {"disks": ["sda"]}
    sink.event("inventory", "1 disk", data)
    data["disks"].append("sdb")
    data["extra"] = ["x"]
    [event] = sink.events
    assert (event.kind, event.message, event.severity) == ("inventory", "1 disk", "info")
    assert set(event.data) == {"disks"}
    with pytest.raises(ValueError, match="event kind 'power lost'"):
        sink.event("power lost")
    with pytest.raises(ValueError, match="severity 'fatal'"):
        sink.event("power_lost", severity="fatal")  # type: ignore[arg-type]
    assert len(sink.events) == 1


def test_a_run_may_add_at_most_max_events() -> None:
    sink = Sink({})
    for n in range(MAX_EVENTS):
        sink.event("tick", str(n))
    with pytest.raises(ValueError, match=f"at most {MAX_EVENTS} events"):
        sink.event("tick")
    assert len(sink.events) == MAX_EVENTS


async def test_run_result_carries_the_events_stamped_like_the_batch() -> None:
    result = await collect_once(Inventory(instance="rack"), "nas", 5.0)
    assert result.batch is not None
    assert [(e.kind, e.severity, e.message) for e in result.events] == [
        ("ups_inventory", "info", "1 UPS"),
        ("power_lost", "warning", "on battery"),
    ]
    assert {(e.host, e.plugin, e.instance, e.ts) for e in result.events} == {
        ("nas", "ups", "rack", result.batch.ts)
    }
    assert result.events[0].data == {"models": ["Back-UPS 700"]}


async def test_a_failed_run_publishes_none_of_its_events() -> None:
    plugin = Inventory()
    plugin.fail = RuntimeError("lost the UPS halfway")
    result = await collect_once(plugin, "nas", 5.0)
    assert result.report.status == "error"
    assert result.batch is None and result.events == ()
