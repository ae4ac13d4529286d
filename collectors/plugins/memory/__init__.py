"""Physical memory and swap usage."""

from __future__ import annotations

import msgspec
import psutil

from unity.collectors.hostfs import DEFAULT_PROC, procfs
from unity.sdk import Metric, Plugin, Sink


class MemoryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    proc_root: str = DEFAULT_PROC


class MemoryPlugin(Plugin):
    id = "memory"
    name = "Memory"
    description = "Physical memory and swap: totals, use, and swap traffic."
    category = "system"
    Config = MemoryConfig
    metrics = (
        Metric("memory_total_bytes", "bytes", "gauge", "installed memory"),
        Metric("memory_available_bytes", "bytes", "gauge", "memory available without swapping"),
        Metric("memory_used_bytes", "bytes", "gauge", "memory in use (total - available)"),
        Metric("memory_free_bytes", "bytes", "gauge", "memory not used at all"),
        Metric("memory_buffers_bytes", "bytes", "gauge", "kernel buffers"),
        Metric("memory_cached_bytes", "bytes", "gauge", "page cache and reclaimable slab"),
        Metric("memory_used_percent", "percent", "gauge", "share of total not available"),
        Metric("swap_total_bytes", "bytes", "gauge", "swap space"),
        Metric("swap_used_bytes", "bytes", "gauge", "swap in use"),
        Metric("swap_used_percent", "percent", "gauge", "share of swap in use"),
        Metric("swap_in_bytes", "bytes", "counter", "bytes swapped in since boot"),
        Metric("swap_out_bytes", "bytes", "counter", "bytes swapped out since boot"),
    )

    config: MemoryConfig

    def collect(self, sink: Sink) -> None:
        with procfs(self.config.proc_root):
            vm = psutil.virtual_memory()
            sw = psutil.swap_memory()
        sink.add("memory_total_bytes", vm.total)
        sink.add("memory_available_bytes", vm.available)
        sink.add("memory_used_bytes", vm.used)
        sink.add("memory_free_bytes", vm.free)
        sink.add("memory_buffers_bytes", getattr(vm, "buffers", 0))
        sink.add("memory_cached_bytes", getattr(vm, "cached", 0))
        sink.add("memory_used_percent", vm.percent)
        sink.add("swap_total_bytes", sw.total)
        sink.add("swap_used_bytes", sw.used)
        sink.add("swap_used_percent", sw.percent)
        sink.add("swap_in_bytes", sw.sin)
        sink.add("swap_out_bytes", sw.sout)
