"""The API's faster paths: `unity api --workers N` (forked workers on one socket that serve,
and stop, together) and the one-round-trip read of latest values."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec

from tests.helpers import wait_for
from tests.integration.ingest_support import Unity, unity_env
from tests.servers import Env
from unity.api.latest import read_values
from unity.compose.embedded import free_port
from unity.compose.services import _listen
from unity.ingest.cache import read_latest, write_latest
from unity.schemas.api import LatestValue
from unity.schemas.storage import CachedValue
from unity.sdk.connection import valkey_client


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name is in parentheses and may hold spaces: fields follow the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def start(env: Env, tmp_path: Path, workers: int) -> tuple[Unity, int]:
    port = free_port()
    child = unity_env(env, tmp_path, api_port=str(port), api_workers=str(workers))
    api = Unity(child, tmp_path / "api.log", "api")

    async def healthy() -> bool:
        assert api.alive(), api.output()
        try:
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{port}/api/v1/health")
        except httpx.TransportError:
            return False
        return r.status_code == 200

    await wait_for(healthy, within=60)
    return api, port


async def test_workers_answer_on_one_port_and_stop_on_sigterm(env: Env, tmp_path: Path) -> None:
    api, port = await start(env, tmp_path, 2)
    try:
        workers = children_of(api.proc.pid)
        assert len(workers) == 2, api.output()
        # Many fresh connections: every one is answered, whichever worker accepts it.
        for _ in range(20):
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{port}/api/v1/health")
            assert r.status_code == 200
        assert api.terminate(timeout=60) == 0, api.output()
        assert not any(alive(w) for w in workers)
    finally:
        if api.alive():
            api.kill()


async def test_a_worker_that_dies_ends_the_service(env: Env, tmp_path: Path) -> None:
    api, _ = await start(env, tmp_path, 2)
    try:
        first, second = sorted(children_of(api.proc.pid))
        os.kill(first, signal.SIGKILL)
        # Non-zero, so that the supervisor restarts the whole API, and no worker is left behind.
        assert api.proc.wait(60) != 0, api.output()
        assert not alive(second)
        assert "stopping the others" in api.output()
    finally:
        if api.alive():
            api.kill()


async def test_connections_on_the_shared_socket_send_without_waiting_for_acks() -> None:
    """Nagle off on accepted connections, as asyncio sets it on its own TCP servers: with it
    on, the body written after the headers waits for the client's delayed ACK."""
    sock = _listen("127.0.0.1", 0, 16)
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            conn = transport.get_extra_info("socket")
            accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


S = timedelta(seconds=1)


def _key(v: LatestValue | CachedValue) -> tuple[str, str, str, str, list[tuple[str, str]]]:
    return (v.host, v.plugin, v.instance, v.name, sorted(v.labels.items()))


async def test_latest_in_one_round_trip_reads_what_the_cache_holds(env: Env) -> None:
    """The script read returns what ingest's reader returns, for each way of narrowing it;
    ``h1`` is a prefix of ``h10``, and a host name may hold a colon."""
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    values = [
        CachedValue(host, plugin, inst, f"m{i}", {"k": str(i)}, "", "gauge", i + 0.5, t0 + i * S)
        for host in ("h1", "h10", "h1:x")
        for plugin in ("disk", "cpu")
        for inst in ("", "b")
        for i in range(3)
    ]
    client = valkey_client(env.ep)
    try:
        await write_latest(client, env.root, values)
        await client.script_flush()  # the first read loads the script again
        for host, plugin in [(None, None), ("h1", None), ("h1", "disk"), (None, "cpu")]:
            got = await read_values(client, env.root, host, plugin)
            want = await read_latest(client, env.root, host, plugin)
            assert want, (host, plugin)
            # The API decodes the cache's records into its own body type, field for field.
            assert [msgspec.structs.asdict(v) for v in sorted(got, key=_key)] == [
                msgspec.structs.asdict(v) for v in sorted(want, key=_key)
            ], (host, plugin)
        assert len(await read_values(client, env.root, None, None)) == len(values)
        # The key prefix also takes in "h1:x" (as read_latest does); the selector drops it later.
        assert {v.host for v in await read_values(client, env.root, "h1", None)} == {"h1", "h1:x"}
        assert await read_values(client, env.root, "nowhere", None) == []
    finally:
        await client.aclose()
