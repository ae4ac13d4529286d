from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.collectors.helpers import by_key, case, collect, key
from unity.collectors.plugins.processes import ProcessesConfig, ProcessesPlugin
from unity.collectors.plugins.system import SystemConfig, SystemPlugin
from unity.sdk import Sink


def test_system_fixture_loads_uptime_and_process_states() -> None:
    root = case("system", "odd-process-names")
    plugin = SystemPlugin(
        SystemConfig(users=False, proc_root=str(root / "proc"), host_root=str(root / "host"))
    )
    sink = collect(plugin)
    values = by_key(sink)
    assert values[key("system_load1")] == 2.15
    assert values[key("system_load15")] == 0.71
    assert values[key("system_threads")] == 412
    assert values[key("system_uptime_seconds")] == 356012.77
    assert values[key("system_boot_time_seconds")] == 1763919600
    # pid 5120 is named "my) Z (evil)": the state is the letter after the LAST ')'.
    assert {dict(k[1])["state"]: v for k, v in values.items() if k[0] == "system_processes"} == {
        "sleeping": 1,
        "idle": 1,
        "running": 1,
        "zombie": 1,
        "disk_sleep": 1,
    }
    assert key("system_users") not in values
    [event] = sink.events
    assert event.kind == "os_info"
    assert event.data == {
        "os": "Linux",
        "kernel": "6.1.0-18-amd64",
        "kernel_version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)",
        "arch": os.uname().machine,
        "id": "debian",
        "version_id": "12",
        "pretty_name": "Debian GNU/Linux 12 (bookworm)",
    }
    assert event.message == "Debian GNU/Linux 12 (bookworm), 6.1.0-18-amd64"
    # The OS is a document: sent again only when it changes.
    assert collect(plugin).events == []


def test_system_counts_the_users_of_the_host_roots_utmp(tmp_path: Path) -> None:
    root = case("system", "odd-process-names")
    plugin = SystemPlugin(SystemConfig(proc_root=str(root / "proc"), host_root=str(root / "host")))
    # The fixture: boot, run level, a getty, alice and bob logged in, carol logged out.
    assert by_key(collect(plugin))[key("system_users")] == 2
    # glibc, pointed at the same file, reads the same sessions (psutil asks glibc).
    libc = ctypes.CDLL(None)
    assert libc.utmpxname(str(root / "host/run/utmp").encode()) == 0
    try:
        assert [u.name for u in psutil.users()] == ["alice", "bob"]
    finally:
        libc.utmpxname(b"/var/run/utmp")
    # A record cut short at the end of the file (being written) is not counted.
    (tmp_path / "run").mkdir()
    whole = (root / "host/run/utmp").read_bytes()
    (tmp_path / "run/utmp").write_bytes(whole + whole[-384 * 3 : -384 * 2][:200])
    cut = SystemPlugin(SystemConfig(proc_root=str(root / "proc"), host_root=str(tmp_path)))
    assert by_key(collect(cut))[key("system_users")] == 2


def test_system_under_the_sdk_sink_gives_samples_and_the_os_event() -> None:
    # What `unity plugin run system` gets: the SDK's own sink, events included.
    sink = Sink(SystemPlugin.declared())
    SystemPlugin().collect(sink)
    assert any(s.name == "system_uptime_seconds" for s in sink.samples)
    assert [e.kind for e in sink.events] == ["os_info"]


def test_system_on_the_live_host_obeys_invariants() -> None:
    sink = collect(SystemPlugin())
    values = by_key(sink)
    assert abs(values[key("system_boot_time_seconds")] - psutil.boot_time()) <= 2
    assert values[key("system_uptime_seconds")] > 0
    processes = sum(v for (n, _), v in values.items() if n == "system_processes")
    assert processes >= 1
    assert abs(processes - len(psutil.pids())) <= 20  # processes come and go while we count
    assert values[key("system_users")] == len(psutil.users())
    assert sink.events[0].data["kernel"] == os.uname().release


def test_processes_live_child_is_counted_by_name_and_ranked() -> None:
    # A child that burns CPU under a name of its own.
    code = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        name = psutil.Process(child.pid).name()
        plugin = ProcessesPlugin(ProcessesConfig(top=100, names=[name, "no-such-process"]))
        collect(plugin)
        time.sleep(0.5)
        sink = collect(plugin)
        values = by_key(sink)
        assert values[key("process_count", name=name)] >= 1
        assert values[key("process_cpu_seconds", name=name)] > 0
        assert values[key("process_memory_rss_bytes", name=name)] > 1_000_000
        assert values[key("process_count", name="no-such-process")] == 0
        [event] = sink.events
        assert event.kind == "top_processes"
        top = event.data["processes"]
        shares = [p["cpu_percent"] or 0.0 for p in top]
        assert shares == sorted(shares, reverse=True)
        # The busy child shows a CPU share measured between the two runs, no sleep inside.
        ours = next(p for p in top if p["pid"] == child.pid)
        assert ours["cpu_percent"] > 1
        assert event.data["interval_s"] > 0.4
    finally:
        child.kill()
        child.wait()


def test_processes_by_memory_sorts_by_rss() -> None:
    sink = collect(ProcessesPlugin(ProcessesConfig(top=5, sort_by="memory")))
    rss = [p["rss_bytes"] for p in sink.events[0].data["processes"]]
    assert rss == sorted(rss, reverse=True)
    assert by_key(sink)[key("processes_total")] >= 5


def test_processes_fixture_names_with_parentheses_and_one_stat_read_each() -> None:
    root = case("system", "odd-process-names") / "proc"
    plugin = ProcessesPlugin(
        ProcessesConfig(
            top=2, sort_by="memory", names=["rsync", "my) Z (evil)"], proc_root=str(root)
        )
    )
    sink = collect(plugin)
    values = by_key(sink)
    page = os.sysconf("SC_PAGE_SIZE")
    assert values[key("processes_total")] == 5
    # rsync: utime 40 + stime 80 ticks, 900 resident pages, one thread
    assert values[key("process_cpu_seconds", name="rsync")] == 1.2
    assert values[key("process_memory_rss_bytes", name="rsync")] == 900 * page
    assert values[key("process_threads", name="rsync")] == 1
    assert values[key("process_count", name="my) Z (evil)")] == 1
    [event] = sink.events
    top = event.data["processes"]
    assert [p["name"] for p in top] == ["systemd", "rsync"]  # 3172 and 900 resident pages
    assert top[0]["cpu_percent"] is None  # the first run has no previous one to compare
    assert top[0]["user"] == pwd.getpwuid(os.getuid()).pw_name


def test_processes_owner_is_named_from_the_host_roots_passwd(tmp_path: Path) -> None:
    root = case("system", "odd-process-names") / "proc"
    uid = os.stat(root / "1").st_uid
    (tmp_path / "etc").mkdir()
    other = f"other:x:{uid + 1}:{uid + 1}::/:/bin/sh\n"
    (tmp_path / "etc/passwd").write_text(f"{other}hostonly:x:{uid}:{uid}::/:/bin/sh\n")
    config = ProcessesConfig(top=5, proc_root=str(root), host_root=str(tmp_path))
    [event] = collect(ProcessesPlugin(config)).events
    assert {p["user"] for p in event.data["processes"]} == {"hostonly"}
    # A uid the host's passwd does not list is shown as the number.
    (tmp_path / "etc/passwd").write_text(other)
    [event] = collect(ProcessesPlugin(config)).events
    assert {p["user"] for p in event.data["processes"]} == {str(uid)}


def test_system_cheap_process_counts_from_proc_stat() -> None:
    root = case("system", "odd-process-names")
    plugin = SystemPlugin(
        SystemConfig(
            users=False,
            process_states=False,
            proc_root=str(root / "proc"),
            host_root=str(root / "host"),
        )
    )
    values = by_key(collect(plugin))
    # procs_running 2, procs_blocked 0 in the fixture's /proc/stat
    assert values[key("system_processes", state="running")] == 2
    assert values[key("system_processes", state="disk_sleep")] == 0
    assert key("system_processes", state="zombie") not in values


def test_process_cpu_seconds_never_drops_when_a_process_of_the_name_exits(
    tmp_path: Path,
) -> None:
    root = tmp_path / "proc"
    shutil.copytree(case("system", "odd-process-names") / "proc", root)
    template = (root / "7002" / "stat").read_text()

    def rsync(pid: int, utime: int, stime: int, started: int) -> None:
        fields = template.replace("7002", str(pid)).split(" ")
        fields[13], fields[14], fields[21] = str(utime), str(stime), str(started)
        (root / str(pid)).mkdir(exist_ok=True)
        (root / str(pid) / "stat").write_text(" ".join(fields))

    tick = os.sysconf("SC_CLK_TCK")
    plugin = ProcessesPlugin(ProcessesConfig(top=0, names=["rsync"], proc_root=str(root)))

    def cpu() -> float:
        return by_key(collect(plugin))[key("process_cpu_seconds", name="rsync")]

    rsync(7003, 10, 10, 36000100)
    assert cpu() == pytest.approx((120 + 20) / tick)  # two alive: all they used so far
    shutil.rmtree(root / "7002")  # exits, having used 120 ticks
    rsync(7003, 30, 10, 36000100)  # 20 more ticks
    assert cpu() == pytest.approx((120 + 40) / tick)
    rsync(7004, 5, 5, 36000200)  # a new one: all of its time counts
    assert cpu() == pytest.approx((120 + 40 + 10) / tick)
    [metric] = [m for m in plugin.metrics if m.name == "process_cpu_seconds"]
    assert metric.kind == "counter"
