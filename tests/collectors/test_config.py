from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collectors.config import ConfigError, load_config, parse_config
from collectors.cpu import CpuConfig, CpuPlugin
from collectors.disk import DiskPlugin
from collectors.memory import MemoryPlugin
from sdk import Plugin

AVAILABLE: dict[str, type[Plugin]] = {"cpu": CpuPlugin, "memory": MemoryPlugin, "disk": DiskPlugin}


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
        ({"plugins": {"nope": {}}}, "plugins.nope: unknown plugin; installed: cpu, disk, memory"),
        ({"plugins": {"cpu": {"interval": "fast"}}}, "plugins.cpu.interval: expected a duration"),
        ({"plugins": {"cpu": {"interval": 0}}}, "plugins.cpu.interval: must be above zero"),
        ({"plugins": {"cpu": {"instance": "a.b"}}}, "plugins.cpu.instance: expected a name"),
        ({"plugins": {"disk": [{}, {}]}}, r"plugins.disk\[1\].instance: '' is used twice"),
        ({"plugins": {"disk": {"mounts": ["/", 3]}}}, r"plugins.disk.mounts\[1\]: Expected `str`"),
        ({"agent": {"interval": -1}}, "agent.interval: a duration cannot be negative"),
        ({"agent": {"spool_max_bytes": "lots"}}, "agent.spool_max_bytes: expected a size"),
        ({"agent": {"content_type": "xml"}}, "agent.content_type: expected 'json' or 'msgpack'"),
        ({"agent": {"self_metrics": "no"}}, "agent.self_metrics: expected true or false"),
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
