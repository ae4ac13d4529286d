"""One walk of /proc per collection tick, shared by the system and processes plugins."""

from __future__ import annotations

import os
import pwd
import shutil
import threading
from pathlib import Path

from tests.collectors.helpers import by_key, case, collect, key
from unity.collectors.pidstat import Snapshot, collection_tick, snapshot
from unity.collectors.plugins.processes import ProcessesConfig, ProcessesPlugin
from unity.collectors.plugins.system import SystemConfig, SystemPlugin
from unity.collectors.runtime.config import AgentConfig, CollectorConfig
from unity.collectors.runtime.runner import Collector
from unity.sdk import Plugin, Sink
from unity.sdk.settings import load_settings


def fixture_copy(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    shutil.copytree(case("system", "odd-process-names") / "proc", root)
    return root


def states(root: Path) -> dict[str, float]:
    plugin = SystemPlugin(SystemConfig(users=False, proc_root=str(root), host_root=str(root)))
    values = by_key(collect(plugin))
    return {dict(k[1])["state"]: v for k, v in values.items() if k[0] == "system_processes"}


def processes_total(root: Path) -> float:
    plugin = ProcessesPlugin(ProcessesConfig(top=0, proc_root=str(root)))
    return by_key(collect(plugin))[key("processes_total")]


def test_plugins_of_one_tick_see_one_walk_and_the_next_tick_walks_again(tmp_path: Path) -> None:
    root = fixture_copy(tmp_path)
    with collection_tick(100.0):
        assert states(root)["zombie"] == 1
        # pid 6001 (the zombie) goes away after system's run: processes, in the same
        # tick, still counts it, because it reads the walk system made.
        shutil.rmtree(root / "6001")
        assert processes_total(root) == 5
    with collection_tick(101.0):
        assert processes_total(root) == 4
        assert "zombie" not in states(root)


def test_outside_a_tick_every_call_walks() -> None:
    root = str(case("system", "odd-process-names") / "proc")
    first, second = snapshot(root), snapshot(root)
    assert first is not second
    assert first.processes == second.processes
    assert second.taken >= first.taken
    with collection_tick(5.0):
        assert snapshot(root) is snapshot(root)


def test_concurrent_runs_of_one_tick_share_the_walk_in_hand() -> None:
    root = str(case("system", "odd-process-names") / "proc")
    seen: list[Snapshot] = []
    start = threading.Barrier(4)

    def run() -> None:
        start.wait(5)
        with collection_tick(7.0):
            seen.append(snapshot(root))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(seen) == 4
    assert all(s is seen[0] for s in seen)


class Walker(Plugin):
    """Keeps the walk each run got, to compare between instances."""

    id = "walker"
    root = str(case("system", "odd-process-names") / "proc")

    def __init__(self, instance: str) -> None:
        super().__init__(instance=instance)
        self.walks: list[Snapshot] = []

    def collect(self, sink: Sink) -> None:
        self.walks.append(snapshot(self.root))


async def test_the_collector_runs_each_tick_under_its_due_time() -> None:
    settings = load_settings(env={}, host_name="testhost")
    config = CollectorConfig(AgentConfig(host="testhost", self_metrics=False))
    a, b = Walker("a"), Walker("b")
    collector = Collector(settings, None, [a, b], interval=1.0, config=config)
    await collector.start(connect=False)
    try:
        await collector.collect_all()  # one tick for both
        await collector.run_once(a)  # each its own due time
        await collector.run_once(b)
    finally:
        await collector.stop(flush_timeout=0)
    assert a.walks[0] is b.walks[0]
    assert a.walks[1] is not b.walks[1]
    assert a.walks[1] is not a.walks[0]


def test_owner_is_looked_up_for_the_listed_processes_and_null_once_gone(tmp_path: Path) -> None:
    root = fixture_copy(tmp_path)
    plugin = ProcessesPlugin(ProcessesConfig(top=2, sort_by="memory", proc_root=str(root)))
    with collection_tick(200.0):
        snapshot(str(root))
        # systemd (3172 resident pages, first by memory) exits after the walk.
        shutil.rmtree(root / "1")
        [event] = collect(plugin).events
    top = event.data["processes"]
    me = pwd.getpwuid(os.getuid()).pw_name
    assert [(p["pid"], p["user"]) for p in top] == [(1, None), (7002, me)]
