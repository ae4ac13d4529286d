"""NVIDIA GPUs through `nvidia-smi --query-gpu ... --format=csv,noheader,nounits`."""

from __future__ import annotations

import csv
import io
import subprocess

import msgspec

from unity.collectors.command import missing
from unity.sdk import Metric, Plugin, Sink

# Query field -> (metric, factor to the published unit). nounits gives MiB, W, MHz, %, C.
FIELDS: dict[str, tuple[str, float]] = {
    "utilization.gpu": ("gpu_utilization_percent", 1.0),
    "utilization.memory": ("gpu_memory_utilization_percent", 1.0),
    "memory.total": ("gpu_memory_total_bytes", 1024.0 * 1024.0),
    "memory.used": ("gpu_memory_used_bytes", 1024.0 * 1024.0),
    "memory.free": ("gpu_memory_free_bytes", 1024.0 * 1024.0),
    "temperature.gpu": ("gpu_temperature_celsius", 1.0),
    "power.draw": ("gpu_power_watts", 1.0),
    "power.limit": ("gpu_power_limit_watts", 1.0),
    "fan.speed": ("gpu_fan_percent", 1.0),
    "clocks.sm": ("gpu_clock_sm_hertz", 1e6),
    "clocks.mem": ("gpu_clock_memory_hertz", 1e6),
}
IDENTITY = ("index", "uuid", "name")
QUERY = ",".join((*IDENTITY, *FIELDS))


class GpuConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    command: str = "nvidia-smi"
    # Not ``timeout``: that key of a plugin table is the scheduler's run timeout.
    command_timeout: float = 5.0


class GpuError(RuntimeError):
    """nvidia-smi is missing, failed, or printed rows that do not match the query."""


def parse_csv(text: str) -> list[dict[str, str]]:
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) != len(IDENTITY) + len(FIELDS):
            raise GpuError(
                f"nvidia-smi row {number} has {len(row)} fields, expected "
                f"{len(IDENTITY) + len(FIELDS)}: {','.join(row)[:120]}"
            )
        rows.append(dict(zip((*IDENTITY, *FIELDS), (v.strip() for v in row), strict=True)))
    return rows


def number(text: str) -> float | None:
    """A value, or None for what nvidia-smi prints when it has none ([N/A], [Not Supported])."""
    try:
        return float(text)
    except ValueError:
        return None


class GpuPlugin(Plugin):
    id = "gpu"
    name = "NVIDIA GPU"
    description = "Per NVIDIA GPU: utilisation, memory, temperature, power, fan, clocks."
    category = "system"
    Config = GpuConfig
    metrics = (
        Metric("gpu_utilization_percent", "percent", "gauge", "time the GPU was busy"),
        Metric("gpu_memory_utilization_percent", "percent", "gauge", "time memory was busy"),
        Metric("gpu_memory_total_bytes", "bytes", "gauge", "GPU memory"),
        Metric("gpu_memory_used_bytes", "bytes", "gauge", "GPU memory in use"),
        Metric("gpu_memory_free_bytes", "bytes", "gauge", "GPU memory free"),
        Metric("gpu_temperature_celsius", "celsius", "gauge", "core temperature"),
        Metric("gpu_power_watts", "watts", "gauge", "power draw"),
        Metric("gpu_power_limit_watts", "watts", "gauge", "power limit"),
        Metric("gpu_fan_percent", "percent", "gauge", "fan speed (share of maximum)"),
        Metric("gpu_clock_sm_hertz", "hertz", "gauge", "streaming multiprocessor clock"),
        Metric("gpu_clock_memory_hertz", "hertz", "gauge", "memory clock"),
    )

    config: GpuConfig

    def unavailable(self) -> str | None:
        return missing([self.config.command])

    def query(self) -> str:
        argv = [self.config.command, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"]
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=self.config.command_timeout, check=False
            )
        except FileNotFoundError:
            raise GpuError(f"{self.config.command} not found (no NVIDIA driver?)") from None
        except subprocess.TimeoutExpired:
            raise GpuError(
                f"{self.config.command} did not answer within {self.config.command_timeout:g}s"
            ) from None
        if done.returncode != 0:
            # nvidia-smi prints its reason on stdout ("NVIDIA-SMI has failed because ...").
            why = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            raise GpuError(
                f"{self.config.command} exited {done.returncode}: {why[0] if why else ''}"
            )
        return done.stdout.decode()

    def collect(self, sink: Sink) -> None:
        for row in parse_csv(self.query()):
            labels = {"gpu": row["index"], "uuid": row["uuid"], "name": row["name"]}
            for field, (metric, factor) in FIELDS.items():
                value = number(row[field])
                if value is not None:
                    sink.add(metric, value * factor, labels)
