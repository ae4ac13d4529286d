"""mongodb against a local fake speaking MongoDB's wire protocol with recorded-shape answers.

No MongoDB server can be installed here (Debian ships none and its binaries are not on PyPI),
so a small server answers OP_MSG (and the legacy OP_QUERY of the first hello) with the
serverStatus and replSetGetStatus documents in testdata/mongodb.
"""

from __future__ import annotations

import socketserver
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import json_util

from tests.collectors.helpers import by_key, collect, key
from unity.collectors.plugins.mongodb import MongodbPlugin
from unity.sdk import ConfigError
from unity.sdk.testing import run

TESTDATA = Path(__file__).parent / "testdata" / "mongodb"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json_util.loads((TESTDATA / name).read_text())
    return doc


HELLO = {
    "isWritablePrimary": True,
    "ismaster": True,
    "topologyVersion": None,
    "maxBsonObjectSize": 16777216,
    "maxMessageSizeBytes": 48000000,
    "maxWriteBatchSize": 100000,
    "localTime": None,
    "logicalSessionTimeoutMinutes": 30,
    "connectionId": 1,
    "minWireVersion": 0,
    "maxWireVersion": 21,
    "readOnly": False,
    "ok": 1.0,
}


class Wire(socketserver.BaseRequestHandler):
    server: Fake

    def handle(self) -> None:
        while True:
            header = self.read(16)
            if header is None:
                return
            length, request_id, _, opcode = struct.unpack("<iiii", header)
            body = self.read(length - 16)
            if body is None:
                return
            if opcode == 2013:  # OP_MSG: flags, then a kind-0 section holding the command
                command = bson.decode(body[5:])
                reply = bson.encode(self.answer(command))
                payload = struct.pack("<I", 0) + b"\x00" + reply
                out_op = 2013
            elif opcode == 2004:  # OP_QUERY: flags, collection name, skip, limit, query
                end = body.index(b"\x00", 4)
                command = bson.decode(body[end + 9 :])
                reply = bson.encode(self.answer(command))
                payload = struct.pack("<iqii", 0, 0, 0, 1) + reply
                out_op = 1
            else:
                return
            self.request.sendall(
                struct.pack("<iiii", 16 + len(payload), request_id + 1, request_id, out_op)
                + payload
            )

    def read(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = self.request.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        name = next(iter(command))
        self.server.commands.append(name)
        if name.lower() in ("hello", "ismaster"):
            return {k: v for k, v in HELLO.items() if v is not None}
        if name == "serverStatus":
            return self.server.status
        if name == "replSetGetStatus":
            if self.server.replset is None:
                return {
                    "ok": 0.0,
                    "errmsg": "not running with --replSet",
                    "code": 76,
                    "codeName": "NoReplicationEnabled",
                }
            return self.server.replset
        return {"ok": 1.0}


class Fake(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, status: dict[str, Any], replset: dict[str, Any] | None) -> None:
        super().__init__(("127.0.0.1", 0), Wire)
        self.status = status
        self.replset = replset
        self.commands: list[str] = []

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.server_address[1]}/"


def serve(status: str, replset: str | None) -> Iterator[Fake]:
    server = Fake(load(status), load(replset) if replset else None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def primary() -> Iterator[Fake]:
    yield from serve("serverStatus-7.0.14-primary.json", "replSetGetStatus-7.0.14.json")


@pytest.fixture
def standalone() -> Iterator[Fake]:
    yield from serve("serverStatus-6.0.19-standalone.json", None)


def plugin(*servers: dict[str, Any]) -> MongodbPlugin:
    return MongodbPlugin(MongodbPlugin.parse_config({"servers": list(servers)}))


def test_mongodb_7_primary_with_its_replica_set(primary: Fake) -> None:
    found = by_key(collect(plugin({"uri": primary.uri, "name": "rs0-a"})))
    at = {"server": "rs0-a"}
    assert found[key("mongodb_connections", state="current", **at)] == 37
    assert found[key("mongodb_connections", state="available", **at)] == 838823
    assert found[key("mongodb_connections_created_total", **at)] == 5120
    assert found[key("mongodb_operations_total", op="insert", **at)] == 18811402
    assert found[key("mongodb_operations_total", op="command", **at)] == 382231990
    assert found[key("mongodb_memory_resident_bytes", **at)] == 1412 * 1024 * 1024
    assert found[key("mongodb_network_transmit_bytes", **at)] == 312770184290
    assert found[key("mongodb_cache_max_bytes", **at)] == 1610612736
    assert found[key("mongodb_replset_my_state", **at)] == 1
    assert found[key("mongodb_replset_member_lag_seconds", member="mongo-b:27017", **at)] == 12.0
    assert found[key("mongodb_replset_member_health", member="mongo-arb:27017", **at)] == 0.0
    assert found[key("mongodb_replset_member_state", member="mongo-arb:27017", **at)] == 8
    assert key("mongodb_replset_member_lag_seconds", member="mongo-a:27017", **at) not in found
    assert {"serverStatus", "replSetGetStatus"} <= set(primary.commands)


def test_mongodb_6_standalone_has_no_replica_set(standalone: Fake) -> None:
    p = plugin({"uri": standalone.uri, "name": "nas"})
    found = by_key(collect(p))
    assert found[key("mongodb_operations_total", op="query", server="nas")] == 3391
    assert found[key("mongodb_uptime_seconds", server="nas")] == 3605
    assert not any(k[0].startswith("mongodb_replset") for k in found)
    assert p.health() is None


async def test_one_server_down_is_degraded_all_down_an_error(standalone: Fake) -> None:
    gone = f"mongodb://127.0.0.1:{standalone.server_address[1]}/"
    result = await run(
        MongodbPlugin(
            MongodbPlugin.parse_config(
                {
                    "servers": [
                        {"uri": standalone.uri, "name": "up"},
                        {"uri": "mongodb://127.0.0.1:1/", "name": "down"},
                    ],
                    "connect_timeout": 0.5,
                }
            )
        )
    )
    assert result.report.status == "degraded"
    assert result.report.message.startswith("down: ServerSelectionTimeoutError")
    standalone.shutdown()
    standalone.server_close()
    result = await run(
        MongodbPlugin(
            MongodbPlugin.parse_config({"servers": [{"uri": gone}], "connect_timeout": 0.5})
        )
    )
    assert result.report.status == "error"


def test_credentials_never_in_the_uri() -> None:
    with pytest.raises(ConfigError, match="no credentials"):
        MongodbPlugin.parse_config({"servers": [{"uri": "mongodb://u:pw@h:27017/"}]})
    assert MongodbPlugin().unavailable() == "no servers configured"
