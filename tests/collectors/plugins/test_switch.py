"""switch against a local SNMP agent (pysnmp's command responder) serving an IF-MIB table."""

from __future__ import annotations

import asyncio
import bisect
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pysnmp.carrier.asyncio.dgram import udp  # type: ignore[import-untyped]
from pysnmp.entity import config, engine  # type: ignore[import-untyped]
from pysnmp.entity.rfc3413 import cmdrsp, context  # type: ignore[import-untyped]
from pysnmp.proto import rfc1902, rfc1905  # type: ignore[import-untyped]
from pysnmp.smi import instrum  # type: ignore[import-untyped]

from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.switch import COLUMNS, SwitchPlugin
from unity.sdk import ConfigError
from unity.sdk.testing import run

HUGE = 9876543210123  # past 2**32: only a 64-bit counter holds it

PORTS: dict[int, dict[str, Any]] = {
    1: {
        "descr": "GigabitEthernet1/0/1",
        "name": "Gi1/0/1",
        "alias": "uplink nas",
        "admin": 1,
        "oper": 1,
        "speed": 1000000000,
        "high_speed": 1000,
        "in_octets": HUGE % 2**32,
        "out_octets": 1234567,
        "hc_in_octets": HUGE,
        "hc_out_octets": 1234567,
        "in_errors": 3,
        "out_errors": 0,
        "in_discards": 11,
        "out_discards": 2,
    },
    2: {
        "descr": "GigabitEthernet1/0/2",
        "name": "Gi1/0/2",
        "alias": "",
        "admin": 1,
        "oper": 2,
        "speed": 0,
        "high_speed": 0,
        "in_octets": 0,
        "out_octets": 0,
        "hc_in_octets": 0,
        "hc_out_octets": 0,
        "in_errors": 0,
        "out_errors": 0,
        "in_discards": 0,
        "out_discards": 0,
    },
    10101: {
        "descr": "TenGigabitEthernet1/1/1",
        "name": "Te1/1/1",
        "alias": "core",
        "admin": 1,
        "oper": 7,
        "speed": 4294967295,
        "high_speed": 10000,
        "in_octets": 5,
        "out_octets": 6,
        "hc_in_octets": 5,
        "hc_out_octets": 6,
        "in_errors": 0,
        "out_errors": 0,
        "in_discards": 0,
        "out_discards": 0,
    },
    # Only in ifTable (no ifXTable row), like the Null0 of many switches: 32-bit counters.
    50: {
        "descr": "Null0",
        "admin": 1,
        "oper": 1,
        "speed": 4294967295,
        "in_octets": 77,
        "out_octets": 88,
        "in_errors": 0,
        "out_errors": 0,
        "in_discards": 0,
        "out_discards": 0,
    },
}
KINDS = {
    "descr": rfc1902.OctetString,
    "name": rfc1902.OctetString,
    "alias": rfc1902.OctetString,
    "admin": rfc1902.Integer,
    "oper": rfc1902.Integer,
    "speed": rfc1902.Gauge32,
    "high_speed": rfc1902.Gauge32,
    "in_octets": rfc1902.Counter32,
    "out_octets": rfc1902.Counter32,
    "hc_in_octets": rfc1902.Counter64,
    "hc_out_octets": rfc1902.Counter64,
    "in_errors": rfc1902.Counter32,
    "out_errors": rfc1902.Counter32,
    "in_discards": rfc1902.Counter32,
    "out_discards": rfc1902.Counter32,
}


class Table(instrum.AbstractMibInstrumController):  # type: ignore[misc]
    """A read-only MIB of fixed values, answering GET, GETNEXT and GETBULK."""

    def __init__(self, values: dict[tuple[int, ...], Any]) -> None:
        self.values = values
        self.oids = sorted(values)

    def read_variables(self, *binds: Any, **ctx: Any) -> list[Any]:
        return [(oid, self.values.get(tuple(oid), rfc1905.noSuchInstance)) for oid, _ in binds]

    def read_next_variables(self, *binds: Any, **ctx: Any) -> list[Any]:
        out = []
        for oid, _ in binds:
            at = bisect.bisect_right(self.oids, tuple(oid))
            if at < len(self.oids):
                found = self.oids[at]
                out.append((rfc1902.ObjectName(found), self.values[found]))
            else:
                out.append((oid, rfc1905.endOfMibView))
        return out


def mib() -> dict[tuple[int, ...], Any]:
    values = {}
    for index, row in PORTS.items():
        for column, value in row.items():
            oid = (*(int(p) for p in COLUMNS[column].split(".")), index)
            values[oid] = KINDS[column](value)
    return values


class Agent:
    def __init__(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        snmp = engine.SnmpEngine()
        transport = udp.UdpAsyncioTransport().open_server_mode(("127.0.0.1", self.port))
        config.add_transport(snmp, udp.DOMAIN_NAME, transport)
        config.add_v1_system(snmp, "lab", "s3cret-community")
        config.add_v3_user(
            snmp,
            "monitor",
            config.USM_AUTH_HMAC96_SHA,
            "auth-pass-123",
            config.USM_PRIV_CFB128_AES,
            "priv-pass-456",
        )
        snmp_context = context.SnmpContext(snmp)
        snmp_context.unregister_context_name(b"")
        snmp_context.register_context_name(b"", Table(mib()))
        for responder in (
            cmdrsp.GetCommandResponder,
            cmdrsp.NextCommandResponder,
            cmdrsp.BulkCommandResponder,
        ):
            responder(snmp, snmp_context)
        self.engine = snmp
        self.loop.call_soon(self.ready.set)
        self.loop.run_forever()
        snmp.close_dispatcher()
        self.loop.run_until_complete(asyncio.sleep(0))  # let the transport finish closing
        self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def agent() -> Iterator[Agent]:
    a = Agent()
    yield a
    a.stop()


def plugin(*devices: dict[str, Any], **config_: Any) -> SwitchPlugin:
    return SwitchPlugin(SwitchPlugin.parse_config({"devices": list(devices), **config_}))


def check_ports(found: dict[Any, float], device: str) -> None:
    gi1 = {"device": device, "interface": "Gi1/0/1", "index": "1"}
    assert found[key("switch_interface_up", **gi1)] == 1.0
    assert found[key("switch_interface_speed_bps", **gi1)] == 1e9
    # The 64-bit counter, not the 32-bit one that wrapped.
    assert found[key("switch_interface_receive_bytes", **gi1)] == HUGE
    assert found[key("switch_interface_receive_errors_total", **gi1)] == 3
    assert found[key("switch_interface_receive_discards_total", **gi1)] == 11
    gi2 = {"device": device, "interface": "Gi1/0/2", "index": "2"}
    assert found[key("switch_interface_up", **gi2)] == 0.0
    assert found[key("switch_interface_admin_up", **gi2)] == 1.0
    te = {"device": device, "interface": "Te1/1/1", "index": "10101"}
    assert found[key("switch_interface_oper_status", **te)] == 7  # lowerLayerDown
    # ifSpeed saturates at 2**32 - 1; ifHighSpeed says 10 Gbit/s.
    assert found[key("switch_interface_speed_bps", **te)] == 1e10
    null = {"device": device, "interface": "Null0", "index": "50"}
    assert found[key("switch_interface_receive_bytes", **null)] == 77
    assert found[key("switch_interface_speed_bps", **null)] == 4294967295


def test_v2c_walks_if_table_and_if_x_table(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNMP_COMMUNITY", "s3cret-community")
    p = plugin(
        {
            "host": "127.0.0.1",
            "port": agent.port,
            "name": "core-sw",
            "community_env": "SNMP_COMMUNITY",
        },
        max_repetitions=3,
    )
    sink = collect(p)
    check_ports(by_key(sink), "core-sw")
    [event] = sink.events
    ports = {i["index"]: i for i in event.data["interfaces"]}
    assert ports[1]["alias"] == "uplink nas" and ports[1]["counters"] == "64-bit"
    assert ports[50]["counters"] == "32-bit"
    assert ports[10101]["oper_status"] == "lowerLayerDown"


def test_v3_auth_and_privacy(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNMP_AUTH", "auth-pass-123")
    monkeypatch.setenv("SNMP_PRIV", "priv-pass-456")
    p = plugin(
        {
            "host": "127.0.0.1",
            "port": agent.port,
            "name": "v3",
            "version": "3",
            "user": "monitor",
            "auth_protocol": "sha",
            "auth_key_env": "SNMP_AUTH",
            "priv_protocol": "aes",
            "priv_key_env": "SNMP_PRIV",
        }
    )
    check_ports(by_key(collect(p)), "v3")


async def test_wrong_credentials_fail_with_a_reason(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNMP_AUTH", "not-the-key-000")
    monkeypatch.setenv("SNMP_PRIV", "priv-pass-456")
    v3 = {
        "host": "127.0.0.1",
        "port": agent.port,
        "name": "bad-v3",
        "version": "3",
        "user": "monitor",
        "auth_key_env": "SNMP_AUTH",
        "priv_key_env": "SNMP_PRIV",
    }
    wrong_community = {"host": "127.0.0.1", "port": agent.port, "name": "bad-v2c"}
    result = await run(plugin(v3, wrong_community, request_timeout=0.3, retries=0))
    assert result.report.status == "error"
    assert "bad-v3: OSError:" in result.report.message
    assert "bad-v2c: OSError:" in result.report.message  # "public" gets no answer: a timeout
    assert "not-the-key" not in result.report.message


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="needs user"):
        SwitchPlugin.parse_config({"devices": [{"host": "h", "version": "3"}]})
    with pytest.raises(ConfigError, match="priv_protocol needs an auth_protocol"):
        SwitchPlugin.parse_config(
            {"devices": [{"host": "h", "version": "3", "user": "u", "auth_protocol": "none"}]}
        )
    assert SwitchPlugin().unavailable() == "no devices configured"
