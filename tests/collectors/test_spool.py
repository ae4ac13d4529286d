from __future__ import annotations

from pathlib import Path

import pytest

from collectors.spool import DiskSpool, Message, Outbox, SpoolError


def msg(n: int, size: int = 10) -> Message:
    return Message(
        f"unity.metrics.h.p{n % 3}", bytes([n % 256]) * size, f"h:p::{n}", "application/json"
    )


def drain(outbox: Outbox) -> list[str]:
    ids = []
    while (head := outbox.head()) is not None:
        ids.append(head.msg_id)
        outbox.pop(head)
    return ids


def test_memory_outbox_keeps_order_and_drops_oldest_when_full() -> None:
    outbox = Outbox(max_messages=3)
    for n in range(5):
        outbox.append(msg(n))
    assert outbox.dropped == 2
    assert drain(outbox) == ["h:p::2", "h:p::3", "h:p::4"]
    assert len(outbox) == 0 and outbox.bytes == 0


def test_disk_spool_survives_a_restart_with_bytes_and_ids_intact(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path / "spool", max_bytes=1_000_000)
    first.open()
    sent = [msg(n, size=100 + n) for n in range(20)]
    for m in sent:
        first.append(m)
    first.close()

    second = DiskSpool(tmp_path / "spool", max_bytes=1_000_000)
    second.open()
    assert len(second) == 20
    got = []
    while (head := second.head()) is not None:
        got.append(head)
        second.pop(head)
    assert got == sent  # subject, payload bytes, Msg-Id and content type, in order
    # New messages after a reopen sort after the old ones.
    second.append(msg(99))
    assert second.head() == msg(99)
    second.close()


def test_disk_spool_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1000)
    spool.open()
    dropped = sum(spool.append(msg(n, size=200)) for n in range(10))
    assert spool.bytes <= 1000
    assert dropped == 10 - len(spool)
    assert spool.head() == msg(10 - len(spool), size=200)
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
    spool.append(msg(1))
    spool.close()
    (tmp_path / "00000000000000000002.tmp").write_bytes(b"half a mess")
    again = DiskSpool(tmp_path, max_bytes=10_000)
    again.open()
    assert len(again) == 1 and not list(tmp_path.glob("*.tmp"))
    again.close()


def test_outbox_spills_to_disk_in_order_then_appends_behind(tmp_path: Path) -> None:
    disk = DiskSpool(tmp_path, max_bytes=1_000_000)
    disk.open()
    outbox = Outbox(max_messages=100, disk=disk)
    outbox.append(msg(1))
    outbox.append(msg(2))
    assert len(disk) == 0
    outbox.spill()  # a publish failed
    assert len(disk) == 2
    assert outbox.on_disk
    outbox.append(msg(3))  # while the disk holds messages, new ones queue behind them
    assert len(disk) == 3
    assert drain(outbox) == ["h:p::1", "h:p::2", "h:p::3"]
    outbox.append(msg(4))  # drained: back to memory
    assert len(disk) == 0 and len(outbox) == 1
    disk.close()


def test_pop_of_a_message_dropped_meanwhile_removes_nothing(tmp_path: Path) -> None:
    outbox = Outbox(max_messages=2)
    outbox.append(msg(1))
    head = outbox.head()
    assert head is not None
    outbox.append(msg(2))
    outbox.append(msg(3))  # msg 1 dropped while "in flight"
    outbox.pop(head)
    assert drain(outbox) == ["h:p::2", "h:p::3"]


def test_window_is_the_oldest_in_memory_else_the_disk_head(tmp_path: Path) -> None:
    disk = DiskSpool(tmp_path, max_bytes=1_000_000)
    disk.open()
    outbox = Outbox(max_messages=100, disk=disk)
    assert outbox.window(8) == []
    for n in range(5):
        outbox.append(msg(n))
    assert [m.msg_id for m in outbox.window(3)] == ["h:p::0", "h:p::1", "h:p::2"]
    assert len(outbox.window(8)) == 5
    outbox.spill()
    # From disk one at a time: each file is read only when it is next.
    assert [m.msg_id for m in outbox.window(8)] == ["h:p::0"]
    assert drain(outbox) == [f"h:p::{n}" for n in range(5)]
    disk.close()
