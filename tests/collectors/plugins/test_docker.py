"""docker: a fake Engine API on a unix socket serving recorded answers; the recorded stats."""

from __future__ import annotations

import copy
import json
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.docker import (
    CpuReading,
    DockerConfig,
    DockerError,
    DockerPlugin,
    cpu_percent,
    io,
    memory,
)
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "docker"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "docker"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


class Engine:
    """The routes the fake engine answers (path with query -> JSON), and what it was asked."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.asked: list[str] = []
        containers = load("containers.json")
        self.routes["/containers/json?all=1"] = containers
        for item in containers:
            name = item["Names"][0].lstrip("/")
            self.routes[f"/containers/{item['Id']}/json"] = load(f"inspect-{name}.json")
            if item["State"] == "running":
                self.routes[f"/containers/{item['Id']}/stats?stream=false&one-shot=true"] = load(
                    f"stats-{name}.json"
                )
        self.routes["/info"] = load("info.json")
        self.routes["/volumes"] = load("volumes.json")

    def id_of(self, name: str) -> str:
        listing = self.routes["/containers/json?all=1"]
        return str(next(c["Id"] for c in listing if c["Names"] == [f"/{name}"]))


class Handler(BaseHTTPRequestHandler):
    server: socketserver.ThreadingUnixStreamServer

    def do_GET(self) -> None:
        engine: Engine = self.server.engine  # type: ignore[attr-defined]
        engine.asked.append(self.path)
        found = engine.routes.get(self.path)
        body = json.dumps(found if found is not None else {"message": "page not found"})
        self.send_response(200 if found is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.47")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a unix peer has no address to log."""


@pytest.fixture
def engine() -> Iterator[tuple[Engine, str]]:
    folder = tempfile.mkdtemp(prefix="unity-docker-")  # short: a socket path has 107 bytes
    path = f"{folder}/docker.sock"
    state = Engine()
    server = socketserver.ThreadingUnixStreamServer(path, Handler)
    server.daemon_threads = True
    server.engine = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state, path
    server.shutdown()
    server.server_close()
    Path(path).unlink()
    Path(folder).rmdir()


def advance(stats: dict[str, Any], container_ns: int, system_ns: int) -> dict[str, Any]:
    later = copy.deepcopy(stats)
    later["cpu_stats"]["cpu_usage"]["total_usage"] += container_ns
    later["cpu_stats"]["system_cpu_usage"] += system_ns
    return later


def test_containers_health_restarts_and_usage(engine: tuple[Engine, str]) -> None:
    fake, socket = engine
    plugin = DockerPlugin(DockerConfig(socket=socket))
    assert plugin.unavailable() is None
    sink = collect(plugin)
    values = by_key(sink)
    web = {"container": "web", "image": "nginx:1.27"}
    worker = {"container": "worker", "image": "ghcr.io/example/worker:2.4.1"}
    backup = {"container": "backup", "image": "restic/restic:0.17.3"}
    assert values[key("docker_container_running", **web)] == 1
    assert values[key("docker_container_running", **backup)] == 0
    assert values[key("docker_container_healthy", **web)] == 1
    assert values[key("docker_container_healthy", **worker)] == 0
    assert key("docker_container_healthy", **backup) not in values  # no health check
    assert values[key("docker_container_restarts_total", **worker)] == 4
    # Memory as `docker stats` shows it: usage minus inactive page cache.
    assert values[key("docker_container_memory_usage_bytes", **web)] == 52428800 - 20971520
    assert values[key("docker_container_memory_percent", **worker)] == pytest.approx(
        (314572800 - 10485760) / 536870912 * 100
    )
    assert values[key("docker_container_network_rx_bytes", **web)] == 734003200
    assert values[key("docker_container_block_read_bytes", **web)] == 12582912
    assert values[key("docker_container_pids", **worker)] == 23
    # One-shot stats carry no previous reading: no CPU % on the first run, never a made-up one.
    assert not any(k[0] == "docker_container_cpu_percent" for k in values)
    assert values[key("docker_containers", state="running")] == 2
    assert values[key("docker_containers", state="exited")] == 1
    assert values[key("docker_images")] == 14
    assert values[key("docker_volumes")] == 2
    assert not any("stats" in p for p in fake.asked if fake.id_of("backup") in p)
    [inventory] = sink.events
    assert inventory.kind == "docker_containers"
    assert inventory.data["containers"]["worker"]["health"] == "unhealthy"

    # Second run: CPU % from this run's and the previous run's readings, as docker stats does.
    stats = f"/containers/{fake.id_of('web')}/stats?stream=false&one-shot=true"
    fake.routes[stats] = advance(fake.routes[stats], 500_000_000, 4_000_000_000)
    idle = f"/containers/{fake.id_of('worker')}/stats?stream=false&one-shot=true"
    fake.routes[idle] = advance(fake.routes[idle], 0, 4_000_000_000)
    values = by_key(collect(plugin))
    # 0.5 s of CPU over 4 s of all 4 CPUs' time: 12.5 % of the machine, 50 % of one CPU.
    assert values[key("docker_container_cpu_percent", **web)] == pytest.approx(50.0)
    assert values[key("docker_container_cpu_percent", **worker)] == 0  # no new CPU time


def test_containers_started_stopped_restarted_between_runs(engine: tuple[Engine, str]) -> None:
    fake, socket = engine
    plugin = DockerPlugin(DockerConfig(socket=socket))
    collect(plugin)
    assert collect(plugin).events == []
    listing = fake.routes["/containers/json?all=1"]
    web, worker, backup = (fake.id_of(n) for n in ("web", "worker", "backup"))
    listing[0]["State"], listing[2]["State"] = "exited", "running"
    fake.routes[f"/containers/{backup}/stats?stream=false&one-shot=true"] = load("stats-web.json")
    fake.routes[f"/containers/{worker}/json"]["RestartCount"] = 6
    sink = collect(plugin)
    kinds = {e.kind: e for e in sink.events}
    changed = kinds["docker_containers_changed"]
    assert (changed.data["started"], changed.data["stopped"]) == (["backup"], ["web"])
    assert changed.message == "started backup; stopped web" and changed.severity == "warning"
    restarted = kinds["docker_container_restarted"]
    assert restarted.message == "worker restarted 2 times (6 in all)"
    # A container removed between the list and its inspect is gone, not an error.
    del fake.routes[f"/containers/{web}/json"]
    values = by_key(collect(plugin))
    assert not any(dict(k[1]).get("container") == "web" for k in values)
    assert plugin.health() is None


def test_unreachable_engine(tmp_path: Path) -> None:
    plugin = DockerPlugin(DockerConfig(socket=str(tmp_path / "docker.sock")))
    assert plugin.unavailable() == f"no Docker socket at {tmp_path / 'docker.sock'}"
    with pytest.raises(DockerError, match="Docker engine: unix:"):
        collect(plugin)
    (tmp_path / "docker.sock").write_text("")
    assert plugin.unavailable() == f"{tmp_path / 'docker.sock'} is not a socket"


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="'host'"):
        DockerPlugin.parse_config({"host": "tcp://0.0.0.0:2375"})


def shared(name: str) -> Any:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    return json.loads((SHARED / name).read_text())


def test_recorded_stats() -> None:
    # Docker 1.10 era, cgroup v1: percpu_usage gives the CPU count, entries without "value".
    old = shared("telegraf-stats-b7dfbb.json")
    assert cpu_percent(old, None) == 0.0
    assert io(old)["docker_container_block_read_bytes"] == 753664
    assert io(old)["docker_container_block_write_bytes"] == 0
    assert memory(old) == {}  # no usage reported: nothing, not a zero
    v1 = shared("telegraf-memory_stats-stats.json")
    # (500 - 400) / (100 - 50) x 2 online CPUs x 100.
    assert cpu_percent(v1, None) == pytest.approx(400.0)
    assert memory(v1)["docker_container_memory_usage_bytes"] == 1111  # total_inactive_file 0
    assert memory(v1)["docker_container_memory_limit_bytes"] == 2000
    assert cpu_percent(v1, CpuReading(0, 0)) == pytest.approx(400.0)  # the engine's own wins
    windows = shared("telegraf-windows-stats.json")
    assert cpu_percent(windows, None) is None
    assert memory(windows) == {"docker_container_memory_usage_bytes": 59961344.0}


def test_recorded_list_and_info_through_the_fake_engine(engine: tuple[Engine, str]) -> None:
    fake, socket = engine
    listing = shared("telegraf-list.json")
    fake.routes = {"/containers/json?all=1": listing, "/info": shared("telegraf-info.json")}
    fake.routes["/volumes"] = {"Volumes": None, "Warnings": None}
    stats = shared("telegraf-stats-b7dfbb.json")
    for item in listing:
        fake.routes[f"/containers/{item['Id']}/json"] = {"State": {}, "RestartCount": 0}
        fake.routes[f"/containers/{item['Id']}/stats?stream=false&one-shot=true"] = stats
    values = by_key(collect(DockerPlugin(DockerConfig(socket=socket))))
    names = {dict(k[1])["container"] for k in values if k[0] == "docker_container_running"}
    assert names == {"etcd", "etcd2", "acme", "acme-test", "foo"}
    assert values[key("docker_images")] == 199
    assert values[key("docker_volumes")] == 0
    assert values[key("docker_containers", state="running")] == 5


def test_every_recorded_docker_file_is_covered() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    used = {
        "telegraf-stats-b7dfbb.json",
        "telegraf-memory_stats-stats.json",
        "telegraf-windows-stats.json",
        "telegraf-list.json",
        "telegraf-info.json",
    }
    # /system/df walks every image layer and volume: too slow to ask each run, so not read.
    assert {p.name for p in SHARED.glob("*.json")} == used | {"telegraf-system-df.json"}
