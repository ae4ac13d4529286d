"""`unity api --workers N`: forked workers on one socket that serve, and stop, together."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import httpx

from compose.embedded import free_port
from compose.services import _listen
from tests.conftest import Env
from tests.helpers import wait_for
from tests.integration.ingest_support import Unity, unity_env


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
