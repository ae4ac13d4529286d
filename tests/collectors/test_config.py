from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from unity.collectors.plugins.cpu import CpuConfig, CpuPlugin
from unity.collectors.plugins.disk import DiskPlugin
from unity.collectors.plugins.gpu import GpuConfig, GpuPlugin
from unity.collectors.plugins.memory import MemoryPlugin
from unity.collectors.plugins.sensors import SensorsPlugin
from unity.collectors.runtime.config import (
    ConfigError,
    check_plugin_fields,
    load_config,
    parse_config,
)
from unity.sdk import Plugin, Sink
from unity.sdk.discovery import discover

AVAILABLE: dict[str, type[Plugin]] = {
    "cpu": CpuPlugin,
    "memory": MemoryPlugin,
    "disk": DiskPlugin,
    "gpu": GpuPlugin,
    "sensors": SensorsPlugin,
}


def parse(raw: dict[str, Any]) -> Any:
    return parse_config(raw, AVAILABLE, "fallback-host")


def test_telegraf_style_config_with_instances_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(
        """
[agent]
host = "web1"
interval = "10s"
jitter = "500ms"
spool_dir = "/var/lib/unity/spool"
spool_max_bytes = "16MiB"

[[plugins.cpu]]
interval = 1
percpu = false

[[plugins.disk]]
instance = "data"
mounts = ["/data"]

[[plugins.disk]]
instance = "root"
interval = "1m"
timeout = "5s"
mounts = ["/"]

[plugins.memory]
enabled = false
"""
    )
    config = load_config(path, AVAILABLE, "fallback-host")
    assert config.agent.host == "web1"
    assert config.agent.spool_max_bytes == 16 * 1024**2
    cpu, data, root, memory = config.plugins
    assert (cpu.key, cpu.interval, cpu.jitter, cpu.timeout) == ("cpu", 1.0, 0.5, 0.8)
    assert cpu.config == CpuConfig(percpu=False)
    assert (data.key, data.interval) == ("disk:data", 10.0)
    assert (root.key, root.interval, root.timeout) == ("disk:root", 60.0, 5.0)
    assert memory.enabled is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"agent": {"hostname": "x"}}, "agent.hostname: unknown key"),
        ({"agents": {}}, "agents: unknown key"),
        ({"plugins": {"cpu": {"percpu": "yes"}}}, "plugins.cpu.percpu: Expected `bool`"),
        ({"plugins": {"cpu": {"per_cpu": True}}}, "plugins.cpu.per_cpu: unknown key"),
        ({"plugins": {"cpu": [{}, {"percpux": 1}]}}, r"plugins.cpu\[1\].percpux: unknown key"),
        (
            {"plugins": {"nope": {}}},
            "plugins.nope: unknown plugin; installed: cpu, disk, gpu, memory, sensors",
        ),
        ({"plugins": {"cpu": {"interval": "fast"}}}, "plugins.cpu.interval: expected a duration"),
        ({"plugins": {"cpu": {"interval": 0}}}, "plugins.cpu.interval: must be above zero"),
        ({"plugins": {"cpu": {"instance": "a.b"}}}, "plugins.cpu.instance: expected a name"),
        ({"plugins": {"disk": [{}, {}]}}, r"plugins.disk\[1\].instance: '' is used twice"),
        ({"plugins": {"disk": {"mounts": ["/", 3]}}}, r"plugins.disk.mounts\[1\]: Expected `str`"),
        ({"agent": {"interval": -1}}, "agent.interval: a duration cannot be negative"),
        ({"agent": {"spool_max_bytes": "lots"}}, "agent.spool_max_bytes: expected a size"),
        ({"agent": {"content_type": "xml"}}, "agent.content_type: expected 'json' or 'msgpack'"),
        ({"agent": {"self_metrics": "no"}}, "agent.self_metrics: expected true or false"),
        (
            {"agent": {"interval": 1, "jitter": "1s"}},
            "agent.jitter: jitter 1s must be below the interval 1s",
        ),
        (
            {"plugins": {"cpu": {"interval": "2s", "jitter": "2.5s"}}},
            r"plugins.cpu.jitter: jitter 2.5s must be below the interval 2s",
        ),
        (
            {"agent": {"jitter": "2s"}, "plugins": {"cpu": {"interval": 1}}},
            r"plugins.cpu.jitter \(from agent.jitter\): jitter 2s must be below the interval 1s",
        ),
        (
            {"plugins": {"gpu": {"interval": 2, "command_timeout": 1.6}}},
            r"plugins.gpu.command_timeout: 1.6s must be below the run timeout of 1.6s "
            r"\(plugins.gpu.timeout\)",
        ),
        (
            {"plugins": {"sensors": {"timeout": 3, "lm_sensors_timeout": 5}}},
            r"plugins.sensors.lm_sensors_timeout: 5s must be below the run timeout of 3s",
        ),
    ],
)
def test_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(raw)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[agent]\nhost = 'x'\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: agent.bogus: unknown key"):
        load_config(path, AVAILABLE, "h")
    path.write_text("[agent\n")
    with pytest.raises(ConfigError, match="cannot read collector config"):
        load_config(path, AVAILABLE, "h")


def test_host_defaults_to_the_machine_and_timeout_to_most_of_the_interval() -> None:
    config = parse({"agent": {"interval": 20}, "plugins": {"cpu": {}}})
    assert config.agent.host == "fallback-host"
    assert config.plugins[0].timeout == 16.0


def test_a_plugin_table_timeout_is_the_run_timeout_and_command_timeout_the_gpu_wait() -> None:
    config = parse({"plugins": {"gpu": {"interval": 10, "timeout": 6, "command_timeout": 2.5}}})
    [gpu] = config.plugins
    assert gpu.timeout == 6.0
    assert gpu.config == GpuConfig(command_timeout=2.5)


class ClashConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    timeout: float = 5.0


class Clash(Plugin):
    id = "clash"
    Config = ClashConfig

    def collect(self, sink: Sink) -> None:
        raise AssertionError("never run")


def test_a_plugin_config_field_named_like_a_scheduler_key_is_rejected() -> None:
    available: dict[str, type[Plugin]] = {"clash": Clash}
    with pytest.raises(ConfigError, match=r"plugins.clash.timeout: plugin 'clash' has a config"):
        parse_config({"plugins": {"clash": {}}}, available, "h")


def test_no_built_in_plugin_has_a_config_field_named_like_a_scheduler_key() -> None:
    built_in = [
        cls for cls in discover().values() if cls.__module__.startswith("unity.collectors.")
    ]
    assert len(built_in) >= 9
    for cls in built_in:
        check_plugin_fields(cls, f"plugins.{cls.id}")
