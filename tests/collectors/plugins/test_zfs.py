"""zfs: zpool list/status and zfs list fixtures through a fake zpool and zfs; recorded outputs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.argv_tool import calls, install
from unity.collectors.command import CommandError
from unity.collectors.plugins.zfs import (
    DATASET_FIELDS,
    POOL_FIELDS,
    ZfsConfig,
    ZfsError,
    ZfsPlugin,
    parse_list,
    parse_status,
)
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "zfs"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "zfs"
LIST = f"list -Hp -o {POOL_FIELDS}"
STATUS = "status -p"
DATASETS = f"list -Hp -t filesystem,volume -o {DATASET_FIELDS}"


def tools(
    monkeypatch: pytest.MonkeyPatch, folder: Path, status: Path = DATA / "zpool-status-p.txt"
) -> Path:
    install(monkeypatch, folder, "zfs", {DATASETS: DATA / "zfs-list-Hp.txt"})
    return install(monkeypatch, folder, "zpool", {LIST: DATA / "zpool-list-Hp.txt", STATUS: status})


def test_pools_scans_devices_and_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = tools(monkeypatch, tmp_path)
    plugin = ZfsPlugin()
    assert plugin.unavailable() is None
    sink = collect(plugin)
    values = by_key(sink)
    assert calls(recorded) == [LIST.split(), STATUS.split()]
    assert values[key("zfs_pool_health", pool="tank")] == 0
    assert values[key("zfs_pool_health", pool="backup")] == 1
    assert values[key("zfs_pool_health", pool="cold")] == 2
    assert values[key("zfs_pool_capacity_percent", pool="backup")] == 66
    assert values[key("zfs_pool_size_bytes", pool="tank")] == 15994458210304
    # A FAULTED pool's sizes are "-": left out, not zero.
    assert key("zfs_pool_size_bytes", pool="cold") not in values
    # Errors counted on leaf devices only (a vdev's row repeats nothing here but could).
    assert values[key("zfs_pool_read_errors", pool="backup")] == 12
    assert values[key("zfs_pool_write_errors", pool="backup")] == 87
    assert values[key("zfs_pool_checksum_errors", pool="backup")] == 3
    assert values[key("zfs_pool_devices_unhealthy", pool="backup")] == 1
    assert values[key("zfs_pool_devices_unhealthy", pool="tank")] == 0  # AVAIL spare is fine
    assert values[key("zfs_pool_devices_unhealthy", pool="cold")] == 1
    assert values[key("zfs_pool_scan_running", pool="backup", function="resilver")] == 1
    assert values[key("zfs_pool_scan_progress_percent", pool="backup", function="resilver")] == (
        56.14
    )
    scrub = {"pool": "tank", "function": "scrub"}
    assert values[key("zfs_pool_scan_running", **scrub)] == 0
    assert values[key("zfs_pool_scan_errors", **scrub)] == 0
    # zpool prints the host's local time without a zone: read as local time.
    ended = time.mktime((2025, 11, 30, 6, 5, 13, 0, 0, -1))
    assert values[key("zfs_pool_scan_end_time_seconds", **scrub)] == ended
    assert values[key("zfs_dataset_used_bytes", dataset="tank/media", pool="tank")] == (
        5400000000000
    )
    assert values[
        key("zfs_dataset_snapshots_used_bytes", dataset="tank/vm/disk0", pool="tank")
    ] == (2147483648)
    events = {e.data["pool"]: e for e in sink.events if e.kind == "zfs_pool_health"}
    assert set(events) == {"backup", "cold"}  # an ONLINE pool is no news on the first run
    assert events["cold"].severity == "critical" and events["backup"].severity == "error"
    assert events["backup"].data["devices_unhealthy"] == [
        "ata-WDC_WD40EFRX-68N32N0_WD-OLD2 FAULTED"
    ]


def test_health_change_and_resilver_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools = tmp_path / "pools.txt"
    pools.write_text((DATA / "zpool-list-Hp.txt").read_text())
    status = tmp_path / "status.txt"
    status.write_text((DATA / "zpool-status-p.txt").read_text())
    install(monkeypatch, tmp_path / "bin", "zpool", {LIST: pools, STATUS: status})
    plugin = ZfsPlugin(ZfsConfig(datasets=False))
    collect(plugin)
    assert collect(plugin).events == []
    pools.write_text(pools.read_text().replace("backup\tDEGRADED", "backup\tONLINE"))
    finished = "  scan: resilvered 1.61T in 03:58:41 with 0 errors on Thu Dec  4 14:10:44 2025\n"
    text = status.read_text()
    start = text.index("  scan: resilver in progress")
    status.write_text(text[:start] + finished + text[text.index("config:") :])
    sink = collect(plugin)
    kinds = {e.kind: e for e in sink.events}
    assert kinds["zfs_pool_health"].message == "pool backup is ONLINE (was DEGRADED)"
    assert kinds["zfs_pool_health"].severity == "info"
    assert kinds["zfs_scan_finished"].message == "resilver of backup finished: 0 errors"
    values = by_key(sink)
    assert values[key("zfs_pool_scan_running", pool="backup", function="resilver")] == 0


def test_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("NAME   SIZE  ALLOC   FREE\ntank  14.5T  8.35T  6.19T\n")
    install(monkeypatch, tmp_path, "zpool", {LIST: broken})
    with pytest.raises(ZfsError, match="expected 8 tab-separated fields"):
        collect(ZfsPlugin())
    nomod = tmp_path / "nomod.txt"
    nomod.write_text("The ZFS modules are not loaded.\nTry running '/sbin/modprobe zfs' as root.\n")
    install(monkeypatch, tmp_path / "b", "zpool", {LIST: (nomod, 1)})
    with pytest.raises(CommandError, match="exited 1: The ZFS modules are not loaded"):
        collect(ZfsPlugin())
    assert ZfsPlugin(ZfsConfig(zpool_command=("no-zpool",))).unavailable() == (
        "no-zpool not found on PATH"
    )


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="'command'"):
        ZfsPlugin.parse_config({"command": ["zpool"]})


def shared(name: str) -> str:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    text = (SHARED / name).read_text()
    # zpool-status-exporter's harness put a TEST_TIMESTAMP= line first: not zpool's output.
    return text.split("\n", 1)[1] if text.startswith("TEST_TIMESTAMP=") else text


# Recorded `zpool status`: file -> {pool: (state, scan, unhealthy devices, cksum, data errors)}.
STATUS_FILES = {
    "zpoolstatus-01-degraded-label-missing.txt": {
        "dummy": ("DEGRADED", "scrub finished", ["loop3 UNAVAIL"], 0, 0)
    },
    "zpoolstatus-02-online-data-corruption.txt": {"jeremy": ("ONLINE", "scrub finished", [], 0, 1)},
    "zpoolstatus-04-scrub-in-progress.txt": {"neptune": ("ONLINE", "scrub running", [], 0, 0)},
    "zpoolstatus-05-multi-pool-features.txt": {
        "rpool": ("ONLINE", "scrub finished", [], 0, 0),
        "wilbur": ("ONLINE", "scrub finished", [], 0, 0),
    },
    "zpoolstatus-06-removed.txt": {
        "dummy": ("DEGRADED", "scrub finished", ["drive0-part1 REMOVED"], 0, 0)
    },
    "zpoolstatus-07-unavail.txt": {
        "mypool": ("DEGRADED", "scrub finished", ["12345678901234567890 UNAVAIL"], 100980, 0)
    },
    "zpoolstatus-09-scrub-canceled.txt": {"neptune": ("ONLINE", "scrub canceled", [], 0, 0)},
    "zpoolstatus-10-never-scanned.txt": {"milton": ("ONLINE", "none none", [], 0, 0)},
    "jc-zpool-status-spares.txt": {"tank": ("ONLINE", "none none", [], 0, 0)},
    "jc-zpool-status-v-three-pools.txt": {
        "zhgstera6": ("ONLINE", "scrub canceled", [], 0, 0),
        "zint500": ("ONLINE", "scrub finished", [], 0, 0),
        "zsam53": ("ONLINE", "scrub finished", [], 0, 0),
    },
    "jc-zpool-status-v2-degraded.txt": {
        "tank": ("DEGRADED", "none none", ["c1t1d0 UNAVAIL"], 0, 0)
    },
    "jc-zpool-status-v3-unavail-io-failures.txt": {
        "tank": ("UNAVAIL", "scrub finished", ["c1t1d0 UNAVAIL"], 0, 3)
    },
}
LIST_FILES = {
    "telegraf-freebsd14-zpool-list-Hp.txt": {"zroot": ("ONLINE", 17.0, 1.0, 4.0)},
    "telegraf-freenas-zpool-list-Hp.txt": {
        "freenas-boot": ("ONLINE", 6.0, 1.0, None),
        "red1": ("ONLINE", 12.0, 1.83, 8.0),  # "8%" and "1.83x": older -p output
        "temp1": ("ONLINE", 54.0, 1.28, 38.0),
        "temp2": ("ONLINE", 20.0, 1.0, 12.0),
    },
    "telegraf-unavail-zpool-list-Hp.txt": {"temp2": ("UNAVAIL", None, None, None)},
}


@pytest.mark.parametrize("name", sorted(STATUS_FILES))
def test_recorded_status(name: str) -> None:
    found = {
        p.name: (
            p.state,
            f"{p.scan.function} {p.scan.state}",
            p.devices_unhealthy,
            p.checksum_errors,
            p.data_errors,
        )
        for p in parse_status(shared(name))
    }
    assert found == STATUS_FILES[name]


def test_recorded_status_details() -> None:
    [running] = parse_status(shared("zpoolstatus-04-scrub-in-progress.txt"))
    assert running.scan.progress == 0.0
    [corrupt] = parse_status(shared("zpoolstatus-02-online-data-corruption.txt"))
    assert corrupt.scan.errors == 1
    [io] = parse_status(shared("jc-zpool-status-v3-unavail-io-failures.txt"))
    assert (io.read_errors, io.write_errors) == (4, 1)


@pytest.mark.parametrize("name", sorted(LIST_FILES))
def test_recorded_zpool_list(name: str) -> None:
    found = {
        p["name"]: (
            p["health"],
            p["zfs_pool_capacity_percent"],
            p["zfs_pool_dedup_ratio"],
            p["zfs_pool_fragmentation_percent"],
        )
        for p in parse_list(shared(name))
    }
    assert found == LIST_FILES[name]


def test_recorded_zfs_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = SHARED / "telegraf-freebsd14-zfs-list-Hp.txt"
    shared("telegraf-freebsd14-zfs-list-Hp.txt")
    install(monkeypatch, tmp_path, "zfs", {DATASETS: datasets})
    install(
        monkeypatch,
        tmp_path,
        "zpool",
        {
            LIST: SHARED / "telegraf-freebsd14-zpool-list-Hp.txt",
            STATUS: DATA / "zpool-status-p.txt",
        },
    )
    values = by_key(collect(ZfsPlugin()))
    used = {dict(k[1])["dataset"]: v for k, v in values.items() if k[0] == "zfs_dataset_used_bytes"}
    assert len(used) == 14 and used["zroot/home"] == 7263580160
    # usedsnap/usedds are "-" on this FreeBSD output: left out.
    assert not any(k[0] == "zfs_dataset_snapshots_used_bytes" for k in values)


def test_every_recorded_zfs_file_is_covered() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    # netdata's files are `zpool list -p` with a header and aligned columns (no -H), and -v
    # vdev rows: not what this plugin asks for.
    others = {p.name for p in SHARED.glob("netdata-zpool-list*.txt")}
    covered = {*STATUS_FILES, *LIST_FILES, "telegraf-freebsd14-zfs-list-Hp.txt"}
    assert {p.name for p in SHARED.glob("*.txt")} == covered | others
