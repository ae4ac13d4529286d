"""ping on loopback (ICMP sockets and the real ping binary), and recorded ping summaries."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.collectors import fake_tool
from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.ping import PingPlugin, group_may_ping, mdev, parse_ping
from unity.sdk.testing import run

TESTDATA = Path(__file__).parent / "testdata" / "ping"


def plugin(*targets: str, **config: Any) -> PingPlugin:
    raw = {"targets": [{"host": t} for t in targets], "count": 3, **config}
    return PingPlugin(PingPlugin.parse_config(raw))


def check_loopback(found: dict[Any, float], target: str = "127.0.0.1") -> None:
    assert found[key("ping_up", target=target)] == 1.0
    assert found[key("ping_loss_percent", target=target)] == 0.0
    low = found[key("ping_rtt_min_seconds", target=target)]
    mean = found[key("ping_rtt_avg_seconds", target=target)]
    high = found[key("ping_rtt_max_seconds", target=target)]
    assert 0 < low <= mean <= high < 1.0
    assert found[key("ping_rtt_mdev_seconds", target=target)] >= 0


def test_loopback_with_icmp_sockets() -> None:
    p = plugin("127.0.0.1", method="socket")
    if not group_may_ping() and os.geteuid() != 0:
        pytest.skip("neither net.ipv4.ping_group_range nor root allows ICMP sockets here")
    assert p.mode()[0] == "socket"
    check_loopback(by_key(collect(p)))


def test_loopback_with_the_ping_binary() -> None:
    if shutil.which("ping") is None:
        pytest.skip("no ping binary (Debian: iputils-ping)")
    p = plugin("127.0.0.1", method="binary")
    assert p.mode() == ("binary", False)
    check_loopback(by_key(collect(p)))


@pytest.mark.parametrize(
    ("name", "sent", "received", "rtts"),
    [
        ("iputils-20240117-all-lost.txt", 5, 0, None),
        ("iputils-20240117-partial-loss.txt", 5, 3, (0.000412, 0.001873, 0.004621, 0.001944)),
        ("busybox-1.36-ok.txt", 5, 5, (0.000318, 0.000402, 0.000511, 0.0)),
    ],
)
def test_recorded_summaries(
    name: str, sent: int, received: int, rtts: tuple[float, ...] | None
) -> None:
    burst = parse_ping((TESTDATA / name).read_text())
    assert (burst.sent, burst.received) == (sent, received)
    if rtts is None:
        assert burst.rtts is None
    else:
        assert burst.rtts == pytest.approx(rtts)


async def test_no_reply_is_data_and_degraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_tool.install(
        monkeypatch,
        tmp_path / "bin",
        "ping",
        TESTDATA / "iputils-20240117-all-lost.txt",
        exit_code=1,
    )
    p = PingPlugin(
        PingPlugin.parse_config(
            {"targets": [{"host": "192.168.1.250", "name": "printer"}], "method": "binary"}
        )
    )
    result = await run(p)
    assert result.report.status == "degraded"
    assert result.report.message == "printer: no reply to 5 echo(es)"
    assert result.batch is not None
    values = {s.name: s.value for s in result.batch.samples}
    assert values == {"ping_up": 0.0, "ping_loss_percent": 100.0}
    [argv] = fake_tool.calls(calls)
    assert argv[-2:] == ["--", "192.168.1.250"]  # a host never read as an option


async def test_an_unknown_name_is_an_error() -> None:
    result = await run(plugin("no-such-host.invalid", method="socket"))
    assert result.report.status == "error"
    assert "no-such-host.invalid" in result.report.message


def test_ping_group_range(tmp_path: Path) -> None:
    allowed = tmp_path / "all"
    allowed.write_text("0\t2147483647\n")
    closed = tmp_path / "none"
    closed.write_text("1\t0\n")  # the kernel's default: nobody
    assert group_may_ping(allowed)
    assert not group_may_ping(closed)
    assert not group_may_ping(tmp_path / "absent")


def test_mdev_is_pings_formula() -> None:
    # iputils: mdev = sqrt(mean(rtt^2) - mean(rtt)^2)
    assert mdev([0.001, 0.003]) == pytest.approx(0.001)
    assert mdev([0.002]) == 0.0


def test_unavailable() -> None:
    assert PingPlugin().unavailable() == "no targets configured"
    p = plugin("h", method="binary", command=["/nonexistent/ping"])
    assert p.unavailable() == "/nonexistent/ping not executable"
