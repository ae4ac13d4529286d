"""Space and inodes per mounted filesystem; pseudo filesystems are left out."""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgspec

from unity.collectors.hostfs import DEFAULT_PROC, require_namespaced
from unity.sdk import Metric, Plugin, Sink

PSEUDO_FS = (
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
)


class DiskConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mounts: list[str] = []
    ignore_fs: tuple[str, ...] = PSEUDO_FS
    ignore_mount_prefixes: tuple[str, ...] = ("/var/lib/docker/", "/run/containerd/", "/snap/")
    proc_root: str = DEFAULT_PROC
    host_root: str = "/"


@dataclass(frozen=True, slots=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str


def _unescape(field: str) -> str:
    # /proc/<pid>/mounts writes space, tab, newline and backslash as octal escapes (\040 ...).
    out: list[str] = []
    i = 0
    while i < len(field):
        chunk = field[i + 1 : i + 4]
        if field[i] == "\\" and len(chunk) == 3 and chunk.isdigit():
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def read_mounts(proc_root: str) -> list[Mount]:
    """Mounts in table order; a mount point mounted twice keeps only the last (what is visible)."""
    text = require_namespaced(proc_root, "mounts")
    by_point: dict[str, Mount] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = Mount(_unescape(fields[0]), _unescape(fields[1]), fields[2])
        by_point.pop(mount.mountpoint, None)
        by_point[mount.mountpoint] = mount
    return list(by_point.values())


class DiskPlugin(Plugin):
    id = "disk"
    name = "Disk space"
    description = "Space and inodes per mounted filesystem, pseudo filesystems excluded."
    category = "system"
    Config = DiskConfig
    metrics = (
        Metric("disk_total_bytes", "bytes", "gauge", "size of the filesystem"),
        Metric("disk_used_bytes", "bytes", "gauge", "space in use"),
        Metric("disk_free_bytes", "bytes", "gauge", "space available to unprivileged users"),
        Metric("disk_used_percent", "percent", "gauge", "used / (used + free), as df shows it"),
        Metric("disk_inodes_total", "", "gauge", "inodes of the filesystem"),
        Metric("disk_inodes_used", "", "gauge", "inodes in use"),
        Metric("disk_inodes_free", "", "gauge", "inodes available to unprivileged users"),
    )

    config: DiskConfig

    def selected(self) -> list[Mount]:
        cfg = self.config
        wanted = set(cfg.mounts)
        ignored = set(cfg.ignore_fs)
        chosen = []
        for mount in read_mounts(cfg.proc_root):
            if wanted:
                if mount.mountpoint in wanted:
                    chosen.append(mount)
                continue
            if mount.fstype in ignored:
                continue
            if any(mount.mountpoint.startswith(p) for p in cfg.ignore_mount_prefixes):
                continue
            chosen.append(mount)
        return chosen

    def collect(self, sink: Sink) -> None:
        for mount in self.selected():
            path = os.path.join(self.config.host_root, mount.mountpoint.lstrip("/"))
            try:
                st = os.statvfs(path)
            except OSError:
                # Unreadable or vanished between listing and statvfs (autofs, stale NFS).
                continue
            if st.f_blocks == 0:
                continue
            labels = {"mount": mount.mountpoint, "device": mount.device, "fstype": mount.fstype}
            total = st.f_blocks * st.f_frsize
            free = st.f_bavail * st.f_frsize
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            sink.add("disk_total_bytes", total, labels)
            sink.add("disk_used_bytes", used, labels)
            sink.add("disk_free_bytes", free, labels)
            sink.add(
                "disk_used_percent", 100.0 * used / (used + free) if used + free else 0.0, labels
            )
            # btrfs and some network filesystems report no inodes at all: nothing to say then.
            if st.f_files:
                sink.add("disk_inodes_total", st.f_files, labels)
                sink.add("disk_inodes_used", st.f_files - st.f_ffree, labels)
                sink.add("disk_inodes_free", st.f_favail, labels)
