"""raid: /proc/mdstat fixture trees (with and without sysfs) and every recorded mdstat."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.raid import RaidConfig, RaidError, RaidPlugin, parse
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "raid"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "mdstat"


def plugin(case: str) -> RaidPlugin:
    root = DATA / case
    return RaidPlugin(RaidConfig(proc_root=str(root / "proc"), sys_root=str(root / "sys")))


def test_clean_arrays_of_every_level() -> None:
    sink = collect(plugin("levels"))
    values = by_key(sink)
    levels = {dict(k[1])["md"]: dict(k[1])["level"] for k in values if k[0] == "raid_active"}
    assert levels == {"md0": "raid1", "md1": "raid5", "md2": "raid6", "md3": "raid10"} | {
        "md4": "raid0"
    }
    assert all(v == 0 for k, v in values.items() if k[0] in ("raid_degraded", "raid_syncing"))
    assert values[key("raid_disks_required", md="md3", level="raid10")] == 4
    assert values[key("raid_disks_active", md="md2", level="raid6")] == 4
    assert values[key("raid_size_bytes", md="md0", level="raid1")] == 487861248 * 1024
    # RAID 0 has no redundancy to count: no required/active, never degraded.
    assert key("raid_disks_required", md="md4", level="raid0") not in values
    assert values[key("raid_arrays")] == 5
    assert [e.kind for e in sink.events] == ["raid_arrays"]
    assert sink.events[0].message == "md4 clean, md3 clean, md2 clean, md1 clean, md0 clean"


def test_degraded_resyncing_recovering_reshaping_checking() -> None:
    raid = plugin("rebuilding")
    sink = collect(raid)
    values = by_key(sink)
    md0 = {"md": "md0", "level": "raid1"}
    assert values[key("raid_degraded", **md0)] == 1
    assert values[key("raid_disks_missing", **md0)] == 1
    assert values[key("raid_disks_failed", **md0)] == 1
    assert values[key("raid_sync_progress_percent", **md0, action="recover")] == 33.0
    assert values[key("raid_sync_remaining_seconds", **md0, action="recover")] == 27.1 * 60
    assert values[key("raid_sync_speed_bytes_per_second", **md0, action="recover")] == (
        200812 * 1024
    )
    progress = {
        dict(k[1])["md"]: (dict(k[1])["action"], v)
        for k, v in values.items()
        if k[0] == "raid_sync_progress_percent"
    }
    assert progress == {
        "md0": ("recover", 33.0),
        "md1": ("resync", 18.5),
        "md2": ("reshape", 6.4),
        "md3": ("check", 71.3),
    }
    md4 = {"md": "md4", "level": "raid5"}
    assert values[key("raid_degraded", **md4)] == 1
    assert values[key("raid_syncing", **md4)] == 0
    degraded = sorted(e.data["md"] for e in sink.events if e.kind == "raid_degraded")
    assert degraded == ["md0", "md4"]
    assert all(e.severity == "critical" for e in sink.events if e.kind == "raid_degraded")
    # Unchanged on the next run: the numbers again, no events.
    assert collect(raid).events == []


def test_sysfs_wins_over_mdstat(tmp_path: Path) -> None:
    # The rebuild finished between the two reads: sysfs says idle and nothing missing.
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "mdstat").write_text((DATA / "rebuilding/proc/mdstat").read_text())
    md = tmp_path / "sys/block/md0/md"
    md.mkdir(parents=True)
    (md / "sync_action").write_text("idle\n")
    (md / "degraded").write_text("0\n")
    raid = RaidPlugin(RaidConfig(proc_root=str(tmp_path / "proc"), sys_root=str(tmp_path / "sys")))
    sink = collect(raid)
    values = by_key(sink)
    md0 = {"md": "md0", "level": "raid1"}
    assert values[key("raid_degraded", **md0)] == 0
    assert values[key("raid_syncing", **md0)] == 0
    assert not any(k[0].startswith("raid_sync_") and dict(k[1])["md"] == "md0" for k in values)
    assert "md0" not in {e.data.get("md") for e in sink.events if e.kind == "raid_degraded"}


def test_array_turning_degraded_sends_one_event(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    mdstat = tmp_path / "proc" / "mdstat"
    mdstat.write_text((DATA / "levels/proc/mdstat").read_text())
    raid = RaidPlugin(RaidConfig(proc_root=str(tmp_path / "proc"), sys_root=str(tmp_path)))
    assert not any(e.kind == "raid_degraded" for e in collect(raid).events)
    mdstat.write_text(
        mdstat.read_text()
        .replace("sdd1[4] sdc1[2]", "sdd1[4](F) sdc1[2]")
        .replace("[4/4] [UUUU]\n\nmd0", "[4/3] [UUU_]\n\nmd0")
    )
    sink = collect(raid)
    [event] = [e for e in sink.events if e.kind == "raid_degraded"]
    assert event.message == "md1 (raid5) degraded: 1 of 4 members missing, 1 failed"
    assert event.data["members"]["sdd1"] == "F"
    assert not any(e.kind == "raid_degraded" for e in collect(raid).events)


def test_no_mdstat_is_unavailable_and_a_failed_run(tmp_path: Path) -> None:
    raid = RaidPlugin(RaidConfig(proc_root=str(tmp_path)))
    assert raid.unavailable() == f"no {tmp_path}/mdstat (md driver not loaded)"
    with pytest.raises(RaidError, match="cannot read"):
        collect(raid)
    assert plugin("levels").unavailable() is None


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="'proc'"):
        RaidPlugin.parse_config({"proc": "/host/proc"})


# Recorded /proc/mdstat: file -> {md: state} (../shared/fixtures/SOURCES.md).
RECORDED = {
    "pymdstat-03-raid5-degraded-nosuper.txt": {"md0": "degraded"},
    "pymdstat-05-raid5-recovery.txt": {"md127": "degraded, recover"},
    "pymdstat-07-raid1-failed-F.txt": {"md1": "degraded"},
    "pymdstat-08-raid5-inactive.txt": {"md0": "inactive"},
    "pymdstat-10-nvme-raid0-mixed.txt": dict.fromkeys(
        ("md129", "md128", "md125", "md126"), "clean"
    ),
    "pymdstat-11-inactive-no-level.txt": {"md127": "inactive"},
    "pymdstat-13-raid4-reshape.txt": {"md127": "degraded, reshape"},
    "pymdstat-15-synology-noindent.txt": dict.fromkeys(("md3", "md2", "md1", "md0"), "clean"),
    "pymdstat-16-large-raid5.txt": {"md1": "clean"},
    "telegraf-empty.txt": {},
    "telegraf-raid10-check-raid1.txt": {"md2": "check", "md1": "clean", "md0": "clean"},
    "telegraf-raid5-degraded.txt": {"md0": "degraded"},
    "procfs-composite-with-reshape.txt": {
        "md3": "clean",
        "md127": "clean",
        "md0": "clean",
        "md4": "inactive",
        "md6": "degraded, recover",
        "md8": "resync",
        "md201": "check",
        "md7": "degraded",
        "md9": "clean",
        "md10": "clean",
        "md11": "clean",
        "md12": "clean",
        "md126": "clean",
        "md219": "inactive",
        "md00": "clean",
        "md120": "clean",
        "md101": "clean",
        "md42": "degraded, reshape",
    },
}


def shared(name: str) -> str:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    return (SHARED / name).read_text()


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_mdstat(name: str) -> None:
    assert {a.name: a.state for a in parse(shared(name))} == RECORDED[name]


def test_recorded_awkward_cases() -> None:
    composite = {a.name: a for a in parse(shared("procfs-composite-with-reshape.txt"))}
    assert composite["md3"].spares == 2 and composite["md3"].size_bytes == 5853468288 * 1024
    assert composite["md9"].failed == 2 and composite["md9"].waiting == "resync delayed"
    assert composite["md11"].read_only == "auto-read-only" and composite["md11"].spares == 2
    assert composite["md219"].level == "" and composite["md219"].spares == 3
    assert composite["md42"].progress == 56.1 and composite["md42"].missing == 1
    [big] = parse(shared("pymdstat-16-large-raid5.txt"))
    assert big.required == 8 and big.size_bytes is not None and big.size_bytes > 9e13
    [degraded] = parse(shared("pymdstat-07-raid1-failed-F.txt"))
    assert (degraded.required, degraded.in_sync, degraded.failed) == (6, 4, 1)


def test_every_recorded_mdstat_is_covered() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    # `mdadm --detail` answers are another tool's output: the plugin reads /proc/mdstat only.
    detail = {p.name for p in SHARED.glob("jc-mdadm-detail-*.txt")}
    assert {p.name for p in SHARED.glob("*.txt")} - detail == set(RECORDED)
