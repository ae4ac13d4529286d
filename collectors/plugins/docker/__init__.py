"""Containers through the Docker Engine API on its unix socket (stdlib HTTP, blocking on purpose).

Per run: ``/containers/json?all=1``, ``/containers/<id>/json`` for health and restarts, and for
each running container one ``/containers/<id>/stats?stream=false&one-shot=true``. One-shot
answers skip the engine's one-second wait for a second reading, so CPU % is computed as
``docker stats`` does, (container delta / system delta) x CPUs x 100, from the answer's
``precpu_stats`` when the engine filled it, else from this plugin's previous run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from unity.collectors import webapi
from unity.sdk import Health, Metric, Plugin, Sink


class DockerError(RuntimeError):
    """The engine could not be reached or answered something that is not its API."""


class DockerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    socket: str = "/var/run/docker.sock"
    read_timeout: float = 5.0
    # Container names (without the leading "/") to leave out; empty = none.
    exclude: tuple[str, ...] = ()
    stats: bool = True


@dataclass(frozen=True, slots=True)
class CpuReading:
    container: float
    system: float


def cpu_percent(stats: Mapping[str, Any], previous: CpuReading | None) -> float | None:
    """CPU % like `docker stats` (100 % = one CPU busy), or None without two readings."""
    now = stats.get("cpu_stats") or {}
    total = (now.get("cpu_usage") or {}).get("total_usage")
    system = now.get("system_cpu_usage")
    if total is None or system is None:
        return None  # Windows engines report no system time
    cpus = (
        now.get("online_cpus") or len((now.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    )
    pre = stats.get("precpu_stats") or {}
    pre_total = (pre.get("cpu_usage") or {}).get("total_usage")
    pre_system = pre.get("system_cpu_usage")
    if pre_system is None or pre_total is None:
        if previous is None:
            return None
        pre_total, pre_system = previous.container, previous.system
    system_delta = system - pre_system
    if system_delta <= 0:
        return None
    return max(0.0, float(total - pre_total) / float(system_delta)) * float(cpus) * 100.0


def cpu_reading(stats: Mapping[str, Any]) -> CpuReading | None:
    now = stats.get("cpu_stats") or {}
    total = (now.get("cpu_usage") or {}).get("total_usage")
    system = now.get("system_cpu_usage")
    return None if total is None or system is None else CpuReading(float(total), float(system))


def memory(stats: Mapping[str, Any]) -> dict[str, float]:
    """Usage as `docker stats` shows it: page cache that can be dropped is not counted."""
    mem = stats.get("memory_stats") or {}
    out: dict[str, float] = {}
    if "privateworkingset" in mem:  # Windows
        out["docker_container_memory_usage_bytes"] = float(mem["privateworkingset"])
        return out
    if "usage" not in mem:
        return out
    detail = mem.get("stats") or {}
    # cgroup v1 names it total_inactive_file, v2 inactive_file.
    cache = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    usage = float(mem["usage"]) - float(cache if cache < mem["usage"] else 0)
    out["docker_container_memory_usage_bytes"] = usage
    if mem.get("limit"):
        out["docker_container_memory_limit_bytes"] = float(mem["limit"])
        out["docker_container_memory_percent"] = usage / float(mem["limit"]) * 100.0
    return out


def io(stats: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    networks = stats.get("networks") or {}
    if networks:
        out["docker_container_network_rx_bytes"] = float(
            sum(n.get("rx_bytes", 0) for n in networks.values())
        )
        out["docker_container_network_tx_bytes"] = float(
            sum(n.get("tx_bytes", 0) for n in networks.values())
        )
    entries = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    if entries:
        for op, metric in (
            ("read", "docker_container_block_read_bytes"),
            ("write", "docker_container_block_write_bytes"),
        ):
            # cgroup v1 says "Read", v2 "read"; an entry without a value counts 0.
            out[metric] = float(
                sum(e.get("value", 0) for e in entries if str(e.get("op", "")).lower() == op)
            )
    pids = (stats.get("pids_stats") or {}).get("current")
    if isinstance(pids, int):
        out["docker_container_pids"] = float(pids)
    return out


def name_of(container: Mapping[str, Any]) -> str:
    names = container.get("Names") or [container.get("Name") or container.get("Id", "")[:12]]
    return str(names[0]).lstrip("/")


class DockerPlugin(Plugin):
    id = "docker"
    name = "Docker"
    description = "Per container: state, health, restarts, CPU %, memory, network and block I/O."
    category = "containers"
    tags = ("docker", "containers")
    Config = DockerConfig
    metrics = (
        Metric("docker_container_running", "", "gauge", "1 while running"),
        Metric("docker_container_healthy", "", "gauge", "1 healthy, 0 unhealthy (with a check)"),
        Metric("docker_container_restarts_total", "", "counter", "restarts by its policy"),
        Metric("docker_container_cpu_percent", "percent", "gauge", "CPU, 100 = one CPU busy"),
        Metric("docker_container_memory_usage_bytes", "bytes", "gauge", "memory without cache"),
        Metric("docker_container_memory_limit_bytes", "bytes", "gauge", "memory limit"),
        Metric("docker_container_memory_percent", "percent", "gauge", "usage of the limit"),
        Metric("docker_container_network_rx_bytes", "bytes", "counter", "received, all networks"),
        Metric("docker_container_network_tx_bytes", "bytes", "counter", "sent, all networks"),
        Metric("docker_container_block_read_bytes", "bytes", "counter", "block device reads"),
        Metric("docker_container_block_write_bytes", "bytes", "counter", "block device writes"),
        Metric("docker_container_pids", "", "gauge", "processes and threads"),
        Metric("docker_containers", "", "gauge", "containers by state"),
        Metric("docker_images", "", "gauge", "images"),
        Metric("docker_volumes", "", "gauge", "volumes"),
    )

    config: DockerConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._cpu: dict[str, CpuReading] = {}
        self._seen: dict[str, dict[str, Any]] | None = None
        self._health: Health | None = None

    def unavailable(self) -> str | None:
        path = Path(self.config.socket)
        if not path.exists():
            return f"no Docker socket at {path}"
        if not path.is_socket():
            return f"{path} is not a socket"
        return None

    def health(self) -> Health | None:
        return self._health

    def get(self, path: str) -> Any:
        try:
            return webapi.get_json(
                f"http://docker{path}",
                unix_socket=self.config.socket,
                timeout=self.config.read_timeout,
            )
        except webapi.WebApiError as exc:
            raise DockerError(f"Docker engine: {exc}") from None

    def collect(self, sink: Sink) -> None:
        self._health = None
        listed = self.get("/containers/json?all=1")
        if not isinstance(listed, list):
            raise DockerError("Docker engine: /containers/json is not a list")
        problems: list[str] = []
        states: dict[str, int] = {}
        now: dict[str, dict[str, Any]] = {}
        cpu: dict[str, CpuReading] = {}
        for item in listed:
            name = name_of(item)
            state = str(item.get("State") or "unknown")
            states[state] = states.get(state, 0) + 1
            if name in self.config.exclude:
                continue
            labels = {"container": name, "image": str(item.get("Image") or "")}
            try:
                inspect = self.get(f"/containers/{item['Id']}/json")
            except DockerError as exc:
                # Removed between the list and the inspect: gone, not broken.
                if "404" not in str(exc):
                    problems.append(f"{name}: {exc}")
                continue
            status = (inspect.get("State") or {}).get("Health", {}).get("Status")
            now[name] = {
                "id": item["Id"][:12],
                "image": labels["image"],
                "state": state,
                "health": status or "",
                "restarts": int(inspect.get("RestartCount") or 0),
                "exit_code": (inspect.get("State") or {}).get("ExitCode"),
            }
            sink.add("docker_container_running", 1.0 if state == "running" else 0.0, labels)
            if status in ("healthy", "unhealthy"):
                sink.add("docker_container_healthy", 1.0 if status == "healthy" else 0.0, labels)
            sink.add("docker_container_restarts_total", now[name]["restarts"], labels)
            if state != "running" or not self.config.stats:
                continue
            try:
                stats = self.get(f"/containers/{item['Id']}/stats?stream=false&one-shot=true")
            except DockerError as exc:
                problems.append(f"{name}: {exc}")
                continue
            percent = cpu_percent(stats, self._cpu.get(item["Id"]))
            if percent is not None:
                sink.add("docker_container_cpu_percent", percent, labels)
            reading = cpu_reading(stats)
            if reading is not None:
                cpu[item["Id"]] = reading
            for metric, value in {**memory(stats), **io(stats)}.items():
                sink.add(metric, value, labels)
        self._cpu = cpu
        for state, count in sorted(states.items()):
            sink.add("docker_containers", float(count), {"state": state})
        info = self.get("/info")
        if isinstance(info.get("Images"), int):
            sink.add("docker_images", float(info["Images"]))
        volumes = self.get("/volumes")
        sink.add("docker_volumes", float(len(volumes.get("Volumes") or [])))
        self._events(sink, now)
        if problems:
            self._health = Health("degraded", "; ".join(problems)[:500])

    def _events(self, sink: Sink, now: dict[str, dict[str, Any]]) -> None:
        before, self._seen = self._seen, now
        if before is None:
            sink.event("docker_containers", f"{len(now)} containers", {"containers": now})
            return
        running = {n for n, c in now.items() if c["state"] == "running"}
        was_running = {n for n, c in before.items() if c["state"] == "running"}
        started, stopped = sorted(running - was_running), sorted(was_running - running)
        removed, created = sorted(before.keys() - now.keys()), sorted(now.keys() - before.keys())
        if started or stopped or removed or created:
            parts = [
                f"{label} {', '.join(names)}"
                for label, names in (
                    ("started", started),
                    ("stopped", stopped),
                    ("created", created),
                    ("removed", removed),
                )
                if names
            ]
            sink.event(
                "docker_containers_changed",
                "; ".join(parts),
                {
                    "started": started,
                    "stopped": stopped,
                    "created": created,
                    "removed": removed,
                    "containers": {n: now.get(n, before.get(n)) for n in {*started, *stopped}},
                },
                "warning" if stopped else "info",
            )
        for name, container in now.items():
            old = before.get(name)
            if old is None:
                continue
            if container["restarts"] > old["restarts"]:
                sink.event(
                    "docker_container_restarted",
                    f"{name} restarted {container['restarts'] - old['restarts']} times "
                    f"({container['restarts']} in all)",
                    container | {"container": name},
                    "warning",
                )
            if container["health"] == "unhealthy" and old["health"] != "unhealthy":
                sink.event(
                    "docker_container_unhealthy",
                    f"{name} is unhealthy",
                    container | {"container": name},
                    "error",
                )
