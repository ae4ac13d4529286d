"""systemd: list-units as JSON (252) and as the old table (241), failed units as an event."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.argv_tool import calls, install
from unity.collectors.plugins.systemd import (
    SystemdConfig,
    SystemdError,
    SystemdPlugin,
    parse_json,
    parse_text,
)
from unity.sdk import ConfigError

DATA = Path(__file__).parent / "testdata" / "systemd"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "systemd"
JSON_ARGS = "list-units --all --no-pager --output=json"
TEXT_ARGS = "list-units --all --no-pager"


def check_counts(values: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> None:
    assert values[key("systemd_units", type="service", state="active")] == 5
    assert values[key("systemd_units", type="service", state="failed")] == 1
    assert values[key("systemd_units", type="service", state="activating")] == 1
    assert values[key("systemd_units", type="mount", state="failed")] == 1
    assert values[key("systemd_units", type="timer", state="active")] == 2
    assert values[key("systemd_units_failed")] == 2
    assert values[key("systemd_units_not_found")] == 1
    assert values[key("systemd_unit_active", unit="docker.service")] == 1
    assert values[key("systemd_unit_active", unit="nut-monitor.service")] == 0
    assert values[key("systemd_unit_active", unit="gone.service")] == 0


WATCHED = ("docker.service", "nut-monitor.service", "gone.service")


def test_json_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = install(
        monkeypatch, tmp_path, "systemctl", {JSON_ARGS: DATA / "list-units-252.json"}
    )
    plugin = SystemdPlugin(SystemdConfig(units=WATCHED))
    sink = collect(plugin)
    check_counts(by_key(sink))
    assert calls(recorded) == [JSON_ARGS.split()]
    [event] = sink.events
    assert (event.kind, event.severity) == ("systemd_failed_units", "error")
    assert event.message == "2 failed: nginx.service, srv-data.mount"
    assert event.data["failed"][0] == {
        "unit": "nginx.service",
        "sub": "failed",
        "description": "A high performance web server and a reverse proxy server",
    }
    assert collect(plugin).events == []  # the same failed units: no new event


def test_old_systemd_table_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = install(
        monkeypatch,
        tmp_path,
        "systemctl",
        {
            JSON_ARGS: (DATA / "unknown-output-json.txt", 1),
            TEXT_ARGS: DATA / "list-units-241.txt",
        },
    )
    sink = collect(SystemdPlugin(SystemdConfig(units=WATCHED)))
    check_counts(by_key(sink))
    assert calls(recorded) == [JSON_ARGS.split(), TEXT_ARGS.split()]
    assert sink.events[0].message == "2 failed: nginx.service, srv-data.mount"


def test_json_and_table_agree() -> None:
    as_json = parse_json((DATA / "list-units-252.json").read_text())
    as_text = parse_text((DATA / "list-units-241.txt").read_text())
    assert as_json == as_text and len(as_json) == 18


def test_failed_set_changes_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listing = tmp_path / "units.json"
    listing.write_text((DATA / "list-units-252.json").read_text())
    install(monkeypatch, tmp_path / "bin", "systemctl", {JSON_ARGS: listing})
    plugin = SystemdPlugin(SystemdConfig(ignore_failed=("srv-data.mount",)))
    [first] = collect(plugin).events
    assert first.message == "1 failed: nginx.service"
    failed, running = '"active": "failed", "sub": "failed"', '"active": "active", "sub": "running"'
    listing.write_text(listing.read_text().replace(failed, running))
    [recovered] = collect(plugin).events
    assert (recovered.message, recovered.severity) == ("no failed units", "info")
    assert recovered.data["was"] == ["nginx.service"]


def test_healthy_host_sends_no_event_on_the_first_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = tmp_path / "units.json"
    listing.write_text(
        '[{"unit": "ssh.service", "load": "loaded", "active": "active", "sub": "running",'
        ' "description": "OpenBSD Secure Shell server"}]\n'
    )
    install(monkeypatch, tmp_path / "bin", "systemctl", {JSON_ARGS: listing})
    sink = collect(SystemdPlugin())
    assert sink.events == []
    assert by_key(sink)[key("systemd_units_failed")] == 0


def test_user_scope_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("Failed to connect to bus: No medium found\n")
    recorded = install(
        monkeypatch, tmp_path / "bin", "systemctl", {f"--user {JSON_ARGS}": (garbage, 1)}
    )
    plugin = SystemdPlugin(SystemdConfig(scope="user"))
    with pytest.raises(Exception, match="exited 1: Failed to connect to bus"):
        collect(plugin)
    assert calls(recorded) == [["--user", *JSON_ARGS.split()]]
    with pytest.raises(SystemdError, match="unexpected line"):
        parse_text("  UNIT LOAD ACTIVE SUB DESCRIPTION\n  broken.service loaded\n")


def test_unavailable_reasons() -> None:
    assert SystemdPlugin(SystemdConfig(command=("no-systemctl",))).unavailable() == (
        "no-systemctl not found on PATH"
    )
    booted = Path("/run/systemd/system").is_dir()
    reason = SystemdPlugin().unavailable()
    if shutil.which("systemctl") is None:
        assert reason == "systemctl not found on PATH"
    else:
        assert (reason is None) == booted
        if not booted:
            assert reason == "not booted with systemd (no /run/systemd/system)"


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="'unit'"):
        SystemdPlugin.parse_config({"unit": ["nginx.service"]})


# Recorded `systemctl` tables (../shared/fixtures/SOURCES.md): file -> (units, failed, not-found).
RECORDED = {
    "jc-centos77-systemctl.txt": (220, 0, 19),
    "jc-ubuntu1804-systemctl.txt": (334, 0, 20),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_tables(name: str) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    units = parse_text((SHARED / name).read_text())
    total, failed, not_found = RECORDED[name]
    # The footer says how many units it listed: the table is read whole, the legend not at all.
    assert len(units) == total
    assert sum(u.active == "failed" for u in units) == failed
    assert sum(u.load == "not-found" for u in units) == not_found
    assert all(u.unit and u.active in ("active", "inactive", "failed") for u in units)


def test_every_recorded_systemctl_file_is_covered() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED}")
    # list-unit-files lists files and their enablement, not unit states.
    others = {"jc-ubuntu1804-systemctl-list-unit-files.txt"}
    assert {p.name for p in SHARED.glob("*.txt")} == set(RECORDED) | others
