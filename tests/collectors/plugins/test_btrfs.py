"""btrfs: filesystem usage and device stats through a fake btrfs; the recorded sysfs tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.argv_tool import calls, install
from unity.collectors.plugins.btrfs import (
    BtrfsConfig,
    BtrfsError,
    BtrfsPlugin,
    btrfs_mounts,
    parse_usage,
)
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "btrfs"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "btrfs"
ANSWERS: dict[str, Path | tuple[Path, int]] = {
    "filesystem usage -b /srv": DATA / "usage-raid1.txt",
    "device stats /srv": DATA / "stats-raid1.txt",
    "filesystem usage -b /mnt/usb backup": DATA / "usage-single-dup.txt",
    "device stats /mnt/usb backup": DATA / "stats-single.txt",
}


def plugin(**kw: object) -> BtrfsPlugin:
    return BtrfsPlugin(BtrfsConfig(proc_root=str(DATA / "proc"), **kw))  # type: ignore[arg-type]


def test_every_mounted_filesystem_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = install(monkeypatch, tmp_path, "btrfs", ANSWERS)
    raid = plugin()
    assert raid.unavailable() is None
    sink = collect(raid)
    values = by_key(sink)
    # /srv/photos is a subvolume of the /srv filesystem: read once.
    assert calls(recorded) == [
        ["filesystem", "usage", "-b", "/srv"],
        ["device", "stats", "/srv"],
        ["filesystem", "usage", "-b", "/mnt/usb backup"],
        ["device", "stats", "/mnt/usb backup"],
    ]
    srv = {"filesystem": "/srv"}
    assert values[key("btrfs_device_size_bytes", **srv)] == 2000397795328
    assert values[key("btrfs_used_bytes", **srv)] == 528391982080
    assert values[key("btrfs_free_estimated_bytes", **srv)] == 736221316096
    assert values[key("btrfs_missing_bytes", **srv)] == 0
    assert values[key("btrfs_devices", **srv)] == 2
    data = {**srv, "type": "data", "profile": "raid1"}
    assert values[key("btrfs_profile_size_bytes", **data)] == 267361714176
    assert values[key("btrfs_profile_used_bytes", **data)] == 263004381184
    usb = {"filesystem": "/mnt/usb backup"}
    assert values[key("btrfs_profile_size_bytes", **usb, type="metadata", profile="dup")] == (
        3221225472
    )
    assert values[key("btrfs_devices", **usb)] == 1
    sdb = {**srv, "device": "/dev/sdb1"}
    assert values[key("btrfs_device_errors_total", **sdb, kind="read_io")] == 14
    assert values[key("btrfs_device_errors_total", **sdb, kind="corruption")] == 3
    [event] = sink.events
    assert event.kind == "btrfs_device_errors" and event.severity == "error"
    assert event.data["errors"] == {
        "/srv /dev/sdb1 read_io_errs": 14,
        "/srv /dev/sdb1 corruption_errs": 3,
    }
    assert collect(raid).events == []  # the same counts: nothing new


def test_growing_error_counter_is_an_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = tmp_path / "stats.txt"
    stats.write_text((DATA / "stats-single.txt").read_text())
    answers = {
        "filesystem usage -b /mnt": DATA / "usage-single-dup.txt",
        "device stats /mnt": stats,
    }
    install(monkeypatch, tmp_path / "bin", "btrfs", answers)
    usb = plugin(mounts=("/mnt",))
    assert collect(usb).events == []
    stats.write_text(stats.read_text().replace("write_io_errs    0", "write_io_errs    2"))
    [event] = collect(usb).events
    assert event.message == "/mnt /dev/sdc write_io_errs 2"


def test_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    denied = tmp_path / "denied.txt"
    denied.write_text("ERROR: cannot access '/srv': Permission denied\n")
    install(monkeypatch, tmp_path, "btrfs", {"filesystem usage -b /srv": (denied, 1)})
    with pytest.raises(Exception, match="exited 1: ERROR: cannot access '/srv'"):
        collect(plugin(mounts=("/srv",)))
    with pytest.raises(BtrfsError, match="no 'Overall:' section"):
        parse_usage("Usage: btrfs filesystem usage [options] <path> [<path>..]\n")
    nothing = BtrfsPlugin(BtrfsConfig(command=(str(tmp_path / "btrfs"),), proc_root=str(tmp_path)))
    assert nothing.unavailable() == "no btrfs filesystem mounted"
    assert plugin(command=("no-btrfs",)).unavailable() == "no-btrfs not found on PATH"


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="'mount'"):
        BtrfsPlugin.parse_config({"mount": "/srv"})


def test_mount_table() -> None:
    assert btrfs_mounts(str(DATA / "proc")) == ["/srv", "/mnt/usb backup"]


def untar(ttar: Path, into: Path) -> None:
    """Unpack prometheus/procfs's ttar format (Path, Lines/SymlinkTo, content, Mode)."""
    lines = ttar.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.startswith("Path: "):
            continue
        path = into / line[len("Path: ") :]
        path.parent.mkdir(parents=True, exist_ok=True)
        kind = lines[index]
        index += 1
        if kind.startswith("Lines: "):
            count = int(kind.split()[1])
            path.write_text("".join(f"{text}\n" for text in lines[index : index + count]))
            index += count
        elif kind.startswith("SymlinkTo: "):
            path.symlink_to(kind[len("SymlinkTo: ") :])
        elif kind.startswith("Directory: "):
            path.mkdir(exist_ok=True)


def test_recorded_sysfs_tree(tmp_path: Path) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    untar(SHARED / "procfs-sysfs-btrfs.ttar", tmp_path)
    sysfs = BtrfsPlugin(BtrfsConfig(source="sysfs", sys_root=str(tmp_path / "fixtures/sys")))
    assert sysfs.unavailable() is None
    values = by_key(collect(sysfs))
    # The labelled filesystem by its label; the one with an empty label by its UUID.
    named = {"filesystem": "fixture"}
    assert values[key("btrfs_devices", **named)] == 2
    assert values[key("btrfs_profile_size_bytes", **named, type="data", profile="raid0")] == (
        2147483648
    )
    assert values[key("btrfs_profile_used_bytes", **named, type="data", profile="raid0")] == (
        808189952
    )
    assert key("btrfs_profile_used_bytes", **named, type="metadata", profile="raid1") in values
    other = {"filesystem": "7f07c59f-6136-449c-ab87-e1cf2328731b"}
    assert values[key("btrfs_devices", **other)] == 4
    assert key("btrfs_profile_size_bytes", **other, type="data", profile="raid5") in values
    assert key("btrfs_profile_size_bytes", **other, type="metadata", profile="raid6") in values
    assert not any(k[0] == "btrfs_device_errors_total" for k in values)  # not in sysfs here


def test_sysfs_without_btrfs(tmp_path: Path) -> None:
    empty = BtrfsPlugin(BtrfsConfig(source="sysfs", sys_root=str(tmp_path)))
    assert empty.unavailable() == f"no btrfs filesystem under {tmp_path}/fs/btrfs"
    with pytest.raises(BtrfsError):
        collect(empty)


def test_every_recorded_btrfs_file_is_covered() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    assert {p.name for p in SHARED.iterdir()} == {"procfs-sysfs-btrfs.ttar"}
