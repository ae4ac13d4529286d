from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from unity.collectors.runtime.spool import DiskSpool, Message, Outbox, SpoolError


def msg(n: int, size: int = 10) -> Message:
    return Message(
        f"unity.metrics.h.p{n % 3}", bytes([n % 256]) * size, f"h:p::{n}", "application/json"
    )


async def drain(outbox: Outbox) -> list[str]:
    ids = []
    while window := await outbox.window(1):
        ids.append(window[0].msg_id)
        await outbox.pop(window)
    return ids


def names(folder: Path, pattern: str) -> list[str]:
    return sorted(p.name for p in folder.glob(pattern))


def read_all(spool: DiskSpool) -> list[Message]:
    got = []
    while window := spool.window(1):
        got.append(window[0])
        spool.pop(window)
    return got


async def test_memory_outbox_keeps_order_and_drops_oldest_when_full() -> None:
    outbox = Outbox(max_messages=3)
    for n in range(5):
        outbox.put(msg(n))
    assert outbox.dropped == 2
    assert outbox.take_drops() == {"buffer full": 2}
    assert outbox.take_drops() == {}
    assert await drain(outbox) == ["h:p::2", "h:p::3", "h:p::4"]
    assert len(outbox) == 0 and outbox.nbytes == 0


def test_disk_spool_survives_a_restart_with_bytes_and_ids_intact(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path / "spool", max_bytes=1_000_000)
    first.open()
    sent = [msg(n, size=100 + n) for n in range(20)]
    assert first.append(sent) == (20, None)
    first.close()

    second = DiskSpool(tmp_path / "spool", max_bytes=1_000_000)
    second.open()
    assert len(second) == 20
    assert read_all(second) == sent  # subject, payload bytes, Msg-Id and content type, in order
    # New messages after a reopen sort after the old ones.
    second.append([msg(99)])
    assert second.window(5) == [msg(99)]
    second.close()


def test_disk_spool_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1000)
    spool.open()
    spool.append([msg(n, size=200) for n in range(10)])
    assert spool.nbytes <= 1000
    assert spool.losses == {"spool full": 10 - len(spool)}
    assert spool.window(1) == [msg(10 - len(spool), size=200)]
    spool.close()


def test_a_second_collector_cannot_share_a_spool(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path, max_bytes=1000)
    first.open()
    with pytest.raises(SpoolError, match="in use by another collector"):
        DiskSpool(tmp_path, max_bytes=1000).open()
    first.close()


def test_a_torn_write_is_ignored_on_reopen(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10_000)
    spool.open()
    spool.append([msg(1)])
    spool.close()
    (tmp_path / "00000000000000000002.tmp").write_bytes(b"half a mess")
    (tmp_path / "notes.msg").write_text("not ours")  # a stray file does not stop the collector
    again = DiskSpool(tmp_path, max_bytes=10_000)
    again.open()
    assert len(again) == 1 and not list(tmp_path.glob("*.tmp"))
    assert again.window(5) == [msg(1)]
    again.close()


async def test_outbox_spills_to_disk_in_order_and_sends_disk_first(tmp_path: Path) -> None:
    disk = DiskSpool(tmp_path, max_bytes=1_000_000)
    outbox = Outbox(max_messages=100, disk=disk)
    await outbox.open()
    outbox.put(msg(1))
    outbox.put(msg(2))
    assert len(disk) == 0
    await outbox.spill()  # a publish failed
    assert len(disk) == 2 and outbox.on_disk
    outbox.put(msg(3))  # newer than the disk: waits in memory behind it
    assert len(disk) == 2 and len(outbox) == 3
    assert await drain(outbox) == ["h:p::1", "h:p::2", "h:p::3"]
    assert len(disk) == 0 and not names(tmp_path, "*.msg")
    await outbox.close()


async def test_pop_of_a_message_dropped_meanwhile_removes_nothing() -> None:
    outbox = Outbox(max_messages=2)
    outbox.put(msg(1))
    window = await outbox.window(1)
    outbox.put(msg(2))
    outbox.put(msg(3))  # msg 1 dropped while "in flight"
    await outbox.pop(window)
    assert await drain(outbox) == ["h:p::2", "h:p::3"]


async def test_window_reads_up_to_the_limit_from_disk_in_one_go(tmp_path: Path) -> None:
    disk = DiskSpool(tmp_path, max_bytes=1_000_000)
    outbox = Outbox(max_messages=100, disk=disk)
    await outbox.open()
    assert await outbox.window(8) == []
    for n in range(5):
        outbox.put(msg(n))
    assert [m.msg_id for m in await outbox.window(3)] == ["h:p::0", "h:p::1", "h:p::2"]
    await outbox.spill()
    outbox.put(msg(5))
    window = await outbox.window(8)
    # Every spooled message in one window, and none of memory's while the disk holds any.
    assert [m.msg_id for m in window] == [f"h:p::{n}" for n in range(5)]
    await outbox.pop(window[:2])  # the first two acked
    assert [m.msg_id for m in await outbox.window(8)] == ["h:p::2", "h:p::3", "h:p::4"]
    assert await drain(outbox) == [f"h:p::{n}" for n in range(2, 6)]
    await outbox.close()


async def test_spool_io_runs_outside_the_event_loop_thread(tmp_path: Path) -> None:
    seen: list[str] = []

    class Recording(DiskSpool):
        def append(self, messages: Sequence[Message]) -> tuple[int, SpoolError | None]:
            seen.append(threading.current_thread().name)
            return super().append(messages)

    outbox = Outbox(max_messages=10, disk=Recording(tmp_path, max_bytes=10_000))
    await outbox.open()
    outbox.put(msg(1))
    await outbox.spill()
    await outbox.close()
    assert seen and seen[0] != threading.current_thread().name
    assert seen[0].startswith("unity-spool")


async def test_memory_overflow_goes_to_disk_when_a_spool_exists(tmp_path: Path) -> None:
    disk = DiskSpool(tmp_path, max_bytes=1_000_000)
    outbox = Outbox(max_messages=4, disk=disk)
    await outbox.open()
    for n in range(7):  # NATS connected but slow: nothing acked meanwhile
        outbox.put(msg(n))
    assert outbox.over_bound and outbox.dropped == 0
    await outbox.spill()
    assert outbox.in_memory == () and len(disk) == 7
    assert await drain(outbox) == [f"h:p::{n}" for n in range(7)]
    assert outbox.dropped == 0
    await outbox.close()


async def test_a_corrupt_or_missing_spool_file_is_set_aside_and_counted(tmp_path: Path) -> None:
    disk = DiskSpool(tmp_path, max_bytes=1_000_000)
    outbox = Outbox(max_messages=100, disk=disk)
    await outbox.open()
    for n in range(4):
        outbox.put(msg(n))
    await outbox.spill()
    files = [tmp_path / name for name in names(tmp_path, "*.msg")]
    files[1].write_bytes(b"\x00not a header")
    files[2].unlink()
    assert await drain(outbox) == ["h:p::0", "h:p::3"]
    assert outbox.dropped == 2
    assert outbox.take_drops() == {"spool file corrupt": 1, "spool file missing": 1}
    assert names(tmp_path, "*.bad") == [files[1].with_suffix(".bad").name]
    await outbox.close()


async def test_a_spool_that_cannot_be_written_keeps_messages_in_memory(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    outbox = Outbox(max_messages=100, disk=DiskSpool(folder, max_bytes=1_000_000))
    await outbox.open()
    outbox.put(msg(1))
    await outbox.spill()
    # The folder is removed: the spool makes it again and goes on.
    shutil.rmtree(folder)
    outbox.put(msg(2))
    await outbox.spill()
    assert names(folder, "*.msg") == ["00000000000000000001.msg"]
    # Now a file stands where the folder was: nothing can be written, nothing is lost.
    shutil.rmtree(folder)
    folder.write_text("in the way")
    outbox.put(msg(3))
    outbox.put(msg(4))
    await outbox.spill()
    assert [m.msg_id for m in outbox.in_memory] == ["h:p::3", "h:p::4"]
    folder.unlink()
    await outbox.spill()  # writable again: memory moves behind what is on disk
    assert outbox.in_memory == ()
    assert await drain(outbox) == ["h:p::3", "h:p::4"]
    assert outbox.take_drops() == {"spool file missing": 2}
    await outbox.close()
