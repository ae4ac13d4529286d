"""email: fake postqueue, mailq and exim on PATH printing their documented output formats, and
the shared recorded `postqueue -p` text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.collectors.helpers import by_key, collect, key
from tests.collectors.plugins.argv_tool import calls, install
from unity.collectors.command import CommandError
from unity.collectors.plugins.email import EmailConfig, EmailPlugin, mailq_text, postqueue_json

DATA = Path(__file__).parent / "testdata" / "email"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "misc"


def test_postqueue_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = install(monkeypatch, tmp_path, "postqueue", {"-j": DATA / "postqueue-3.7.11-j.jsonl"})
    p = EmailPlugin(EmailConfig())
    assert p.unavailable() is None
    sink = collect(p)
    values = by_key(sink)
    assert values[key("email_mta_up")] == 1
    assert values[key("email_queue_messages", queue="deferred")] == 2
    assert values[key("email_queue_bytes", queue="deferred")] == 18211 + 4410
    assert values[key("email_queue_messages", queue="hold")] == 1
    assert values[key("email_queue_messages", queue="active")] == 1
    oldest = values[key("email_queue_oldest_seconds", queue="deferred")]
    assert oldest == pytest.approx(dt.datetime.now(dt.UTC).timestamp() - 1764784800, abs=60)
    [event] = sink.events
    assert event.severity == "warning"
    assert list(event.data["reasons"].values()) == [2, 1]  # two greylisted recipients first
    assert calls(log) == [["-j"]]


def test_postqueue_text_has_no_year_and_no_zone() -> None:
    now = dt.datetime(2026, 12, 4, 18, 0, 0)
    queue, totals = mailq_text((DATA / "postqueue-3.7.11-p.txt").read_text(), now)
    same = postqueue_json((DATA / "postqueue-3.7.11-j.jsonl").read_text())
    assert queue.messages == same.messages
    assert queue.size == same.size
    assert totals == (121, 4)
    assert queue.reasons == same.reasons
    # Local times; a December date seen in January belongs to last year.
    new_year = dt.datetime(2027, 1, 2, 9, 0, 0)
    late, _ = mailq_text((DATA / "postqueue-3.7.11-p.txt").read_text(), new_year)
    assert dt.datetime.fromtimestamp(min(late.oldest.values())).year == 2026


def test_empty_queue_and_mta_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, tmp_path, "postqueue", {"-p": DATA / "postqueue-3.7.11-p-empty.txt"})
    values = by_key(collect(EmailPlugin(EmailConfig(json=False))))
    assert values[key("email_queue_messages", queue="deferred")] == 0
    install(monkeypatch, tmp_path / "down", "postqueue",
            {"-j": (DATA / "postqueue-3.7.11-down.txt", 69)})  # fmt: skip
    p = EmailPlugin(EmailConfig())
    values = by_key(collect(p))
    assert values == {key("email_mta_up"): 0}
    health = p.health()
    assert health is not None and "mail system is down" in health.message


def test_other_failures_fail_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, tmp_path, "postqueue", {})
    with pytest.raises(CommandError, match="postqueue exited 64"):
        collect(EmailPlugin(EmailConfig()))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/fixtures is absent")
def test_recorded_postqueue_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, tmp_path, "mailq", {"": SHARED / "netdata-postqueue.txt"})
    values = by_key(collect(EmailPlugin(EmailConfig(mta="mailq"))))
    # The listing shows 11 active messages; its totals line counts the whole queue.
    assert values[key("email_queue_messages", queue="active")] == 11
    assert values[key("email_queue_messages", queue="all")] == 12991
    assert values[key("email_queue_bytes", queue="all")] == 132422 * 1024


def test_exim_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, tmp_path, "sudo", {"-n exim -bpc": DATA / "exim-4.96-bpc.txt"})
    p = EmailPlugin(EmailConfig(mta="exim", command=["sudo", "-n", "exim"]))
    values = by_key(collect(p))
    assert values[key("email_queue_messages", queue="all")] == 17
    assert values[key("email_mta_up")] == 1
