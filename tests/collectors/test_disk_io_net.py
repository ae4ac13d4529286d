from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import psutil
import pytest

from tests.collectors.helpers import by_key, case, collect, key
from unity.collectors.hostfs import namespaced
from unity.collectors.plugins.disk import DiskConfig, DiskPlugin, read_mounts
from unity.collectors.plugins.diskio import DiskIOConfig, DiskIOPlugin
from unity.collectors.plugins.net import NetConfig, NetPlugin


@pytest.fixture
def server_tree(tmp_path: Path) -> Path:
    """The disk fixture's proc tree, plus a host root holding the mount points it lists."""
    shutil.copytree(case("disk", "server") / "proc", tmp_path / "proc")
    for point in ("boot", "mnt/my disk", "snap/core22/1380", "var/lib/docker/overlay2/0f3a9c"):
        (tmp_path / "host" / point).mkdir(parents=True)
    # /mnt/nas is listed but missing under the host root: statvfs fails, the mount is skipped.
    return tmp_path


def test_disk_fixture_keeps_real_filesystems_only(server_tree: Path) -> None:
    plugin = DiskPlugin(
        DiskConfig(proc_root=str(server_tree / "proc"), host_root=str(server_tree / "host"))
    )
    chosen = {(m.mountpoint, m.device, m.fstype) for m in plugin.selected()}
    # proc, sysfs, devtmpfs, devpts, tmpfs, cgroup2, autofs, squashfs (snap) and the docker
    # overlay are left out; /boot was mounted twice and only the top (ext4) mount is visible;
    # the escaped space in "/mnt/my\040disk" is decoded.
    assert chosen == {
        ("/", "/dev/mapper/vg0-root", "ext4"),
        ("/boot", "/dev/sda2", "ext4"),
        ("/mnt/my disk", "/dev/sdb1", "ext4"),
        ("/mnt/nas", "nas:/export", "nfs4"),
    }
    values = by_key(collect(plugin))
    st = os.statvfs(server_tree)  # every mount point in the fixture lives on tmp's filesystem
    labels = {"mount": "/mnt/my disk", "device": "/dev/sdb1", "fstype": "ext4"}
    total = st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    free = st.f_bavail * st.f_frsize
    assert values[key("disk_total_bytes", **labels)] == pytest.approx(total, rel=0.01)
    assert values[key("disk_used_bytes", **labels)] == pytest.approx(used, rel=0.05)
    assert values[key("disk_free_bytes", **labels)] == pytest.approx(free, rel=0.05)
    assert values[key("disk_used_percent", **labels)] == pytest.approx(
        100 * used / (used + free), abs=1
    )
    mounts = {dict(k[1])["mount"] for k in values}
    assert mounts == {"/", "/boot", "/mnt/my disk"}  # /mnt/nas: statvfs failed, skipped


def test_disk_explicit_mount_list_wins_over_exclusions(server_tree: Path) -> None:
    plugin = DiskPlugin(
        DiskConfig(
            mounts=["/snap/core22/1380", "/boot"],
            proc_root=str(server_tree / "proc"),
            host_root=str(server_tree / "host"),
        )
    )
    assert {m.mountpoint for m in plugin.selected()} == {"/snap/core22/1380", "/boot"}


def test_disk_under_a_host_proc_lists_pid_1s_mounts_not_its_own() -> None:
    # /host/proc/self is the collector: its mounts are the container's (overlay root, the host
    # bind-mounted at /hostfs); PID 1 is the host's init and sees the host's filesystems.
    root = case("disk", "container") / "proc"
    chosen = {
        (m.mountpoint, m.fstype) for m in DiskPlugin(DiskConfig(proc_root=str(root))).selected()
    }
    assert chosen == {("/", "ext4"), ("/boot/efi", "vfat"), ("/data", "xfs")}


def test_disk_falls_back_to_its_own_mounts_when_pid_1s_cannot_be_read(tmp_path: Path) -> None:
    shutil.copytree(case("disk", "container") / "proc", tmp_path / "proc")
    (tmp_path / "proc" / "1" / "mounts").unlink()
    (tmp_path / "proc" / "1" / "mounts").mkdir()  # reading it fails as a hidden /proc/1 would
    chosen = {m.mountpoint for m in read_mounts(str(tmp_path / "proc"))}
    assert "/hostfs" in chosen and "/data" not in chosen


def test_default_proc_keeps_the_collectors_own_namespace_view() -> None:
    # On the host's own /proc the collector's view is the right one (statvfs runs there too).
    assert namespaced("/proc", "mounts") == [Path("/proc/self/mounts"), Path("/proc/mounts")]
    assert namespaced("/host/proc/", "net/dev")[0] == Path("/host/proc/1/net/dev")


def test_disk_missing_mount_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mounts"):
        read_mounts(str(tmp_path))


def test_disk_on_the_live_host_obeys_invariants() -> None:
    sink = collect(DiskPlugin())
    values = by_key(sink)
    roots = [k for k in values if k[0] == "disk_total_bytes"]
    assert roots, "the live host has at least one real filesystem"
    for name, labels in roots:
        total = values[(name, labels)]
        assert values[("disk_used_bytes", labels)] + values[("disk_free_bytes", labels)] <= total
        assert 0 <= values[("disk_used_percent", labels)] <= 100
        assert dict(labels)["fstype"] not in DiskConfig().ignore_fs


def test_diskio_fixture_parses_every_kernel_format() -> None:
    root = case("diskio", "mixed-kernels")
    values = by_key(collect(DiskIOPlugin(DiskIOConfig(proc_root=str(root / "proc")))))
    devices = {dict(labels)["device"] for _, labels in values}
    assert devices == {"sda", "sda1", "nvme0n1", "vdb", "hda1"}  # loop0 and ram0 ignored
    # 20 fields (kernel >= 5.5)
    assert values[key("diskio_read_bytes", device="sda")] == 12845290 * 512
    assert values[key("diskio_written_bytes", device="sda")] == 30884211 * 512
    assert values[key("diskio_reads_total", device="sda")] == 184321
    assert values[key("diskio_writes_total", device="sda")] == 402231
    assert values[key("diskio_busy_seconds", device="sda")] == 254.110
    assert values[key("diskio_in_progress", device="sda")] == 3
    # 18 fields (discards, 4.18 - 5.4)
    assert values[key("diskio_read_time_seconds", device="nvme0n1")] == 150.0
    assert values[key("diskio_write_time_seconds", device="nvme0n1")] == 400.0
    # 14 fields (before 4.18)
    assert values[key("diskio_written_bytes", device="vdb")] == 40000 * 512
    assert values[key("diskio_busy_seconds", device="vdb")] == 1.1
    # 7 fields (a 2.6 partition line): no timing columns exist
    assert values[key("diskio_read_bytes", device="hda1")] == 2800 * 512
    assert values[key("diskio_writes_total", device="hda1")] == 120
    kinds = {m.name: m.kind for m in DiskIOPlugin.metrics}
    assert kinds["diskio_read_bytes"] == kinds["diskio_busy_seconds"] == "counter"


def test_diskio_device_globs() -> None:
    root = case("diskio", "mixed-kernels")
    plugin = DiskIOPlugin(DiskIOConfig(devices=["sd*"], proc_root=str(root / "proc")))
    devices = {s.labels["device"] for s in collect(plugin).samples}
    assert devices == {"sda", "sda1"}


def test_diskio_on_the_live_host_matches_psutil() -> None:
    live = psutil.disk_io_counters(perdisk=True)
    values = by_key(collect(DiskIOPlugin()))
    for device in {dict(labels)["device"] for _, labels in values} & set(live):
        # Counters only grow: ours were read after psutil's.
        assert values[key("diskio_reads_total", device=device)] >= live[device].read_count
        assert values[key("diskio_read_bytes", device=device)] >= live[device].read_bytes


def test_net_fixture_counters_and_connection_states() -> None:
    root = case("net", "router")
    values = by_key(collect(NetPlugin(NetConfig(tcp_states=True, proc_root=str(root / "proc")))))
    # Old kernels print "eth0:98765432100" with no space once the counter is wide.
    assert values[key("net_received_bytes", interface="eth0")] == 98765432100
    assert values[key("net_received_packets_total", interface="eth0")] == 81234567
    assert values[key("net_receive_errors_total", interface="eth0")] == 3
    assert values[key("net_receive_drops_total", interface="eth0")] == 17
    assert values[key("net_sent_bytes", interface="eth0")] == 12345678900
    assert values[key("net_sent_packets_total", interface="eth0")] == 45678901
    assert values[key("net_send_errors_total", interface="eth0")] == 1
    assert values[key("net_send_drops_total", interface="eth0")] == 2
    assert values[key("net_send_drops_total", interface="wg-home")] == 5
    assert values[key("net_received_bytes", interface="lo")] == 5735018
    # IPv4 and IPv6 together
    assert values[key("net_tcp_connections", state="listen")] == 3
    assert values[key("net_tcp_connections", state="established")] == 2
    assert values[key("net_tcp_connections", state="time_wait")] == 1
    assert values[key("net_tcp_connections", state="close_wait")] == 1
    assert values[key("net_tcp_connections", state="syn_sent")] == 0
    # From sockstat: cheap counts, always on
    assert values[key("net_tcp_sockets", family="ipv4")] == 4
    assert values[key("net_tcp_sockets", family="ipv6")] == 2
    assert values[key("net_tcp_time_wait")] == 7
    assert values[key("net_tcp_orphans")] == 1
    assert values[key("net_udp_sockets", family="ipv4")] == 2
    assert values[key("net_udp_sockets", family="ipv6")] == 0


def test_net_under_a_host_proc_reads_pid_1s_network_namespace() -> None:
    # /host/proc/net links to self/net, the collector's own namespace (lo and its eth0);
    # /host/proc/1/net is the host's.
    root = case("net", "container") / "proc"
    values = by_key(collect(NetPlugin(NetConfig(tcp_states=True, proc_root=str(root)))))
    interfaces = {dict(labels)["interface"] for n, labels in values if n == "net_sent_bytes"}
    assert interfaces == {"lo", "eno1", "docker0", "veth3a1c2f9"}
    assert values[key("net_received_bytes", interface="eno1")] == 73410928811
    assert values[key("net_receive_drops_total", interface="eno1")] == 41
    assert values[key("net_tcp_sockets", family="ipv4")] == 37
    assert values[key("net_tcp_sockets", family="ipv6")] == 9
    assert values[key("net_tcp_time_wait")] == 14
    assert values[key("net_udp_sockets", family="ipv6")] == 3
    assert values[key("net_tcp_connections", state="listen")] == 3
    assert values[key("net_tcp_connections", state="established")] == 2
    assert values[key("net_tcp_connections", state="time_wait")] == 1


def test_net_tcp_states_are_off_by_default() -> None:
    root = case("net", "router")
    names = {s.name for s in collect(NetPlugin(NetConfig(proc_root=str(root / "proc")))).samples}
    assert "net_tcp_connections" not in names and "net_tcp_sockets" in names


def test_net_interface_filters_and_no_connections() -> None:
    root = case("net", "router")
    plugin = NetPlugin(
        NetConfig(
            ignore_interfaces=["lo", "docker*"], connections=False, proc_root=str(root / "proc")
        )
    )
    sink = collect(plugin)
    assert {s.labels.get("interface") for s in sink.samples} == {"eth0", "wg-home"}


def test_net_on_the_live_host_matches_psutil() -> None:
    live = psutil.net_io_counters(pernic=True)
    values = by_key(collect(NetPlugin()))
    assert {dict(labels)["interface"] for n, labels in values if n == "net_sent_bytes"} == set(live)
    for nic, counters in live.items():
        assert values[key("net_received_bytes", interface=nic)] >= counters.bytes_recv
    assert values[key("net_tcp_sockets", family="ipv4")] >= 0


def test_net_counts_a_listening_socket_of_this_test(tmp_path: Path) -> None:
    # The live tables are copied while the socket listens: other processes on this host open
    # and close sockets at any time, so two live reads cannot be compared.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        live = {name: Path("/proc/net", name).read_text() for name in ("dev", "tcp", "tcp6")}

    def listening(tables: dict[str, str]) -> float:
        root = tmp_path / f"proc{len(list(tmp_path.iterdir()))}"
        (root / "net").mkdir(parents=True)
        for name, text in tables.items():
            (root / "net" / name).write_text(text)
        plugin = NetPlugin(NetConfig(tcp_states=True, proc_root=str(root)))
        return by_key(collect(plugin))[key("net_tcp_connections", state="listen")]

    # The kernel's line for our socket: local address 0100007F:<port>, state 0A (LISTEN).
    lines = live["tcp"].splitlines(keepends=True)
    ours = [line for line in lines[1:] if line.split()[1] == f"0100007F:{port:04X}"]
    assert [line.split()[3] for line in ours] == ["0A"]
    without = {**live, "tcp": "".join(line for line in lines if line not in ours)}
    assert listening(live) == listening(without) + 1 >= 1
