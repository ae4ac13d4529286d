"""`unity up`: the embedded servers and the Unity services as supervised child processes."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import alembic.util
import asyncpg
import nats.errors
import sqlalchemy.exc

from unity.compose import migrate
from unity.compose.embedded import (
    EmbeddedServer,
    NatsServer,
    PidFile,
    PostgresServer,
    ValkeyServer,
    spawn,
    stop_process,
)
from unity.compose.remote import remote_url
from unity.ingest.streams import ensure_consumers, ensure_streams
from unity.sdk.connection import connect_nats
from unity.sdk.settings import Endpoints, Secrets, Settings, endpoints, settings_env

log = logging.getLogger(__name__)

SERVICES = ("ingest", "alerts", "maintain", "api", "collector")


class StackError(RuntimeError):
    """`unity up` cannot start."""


# What a server that is unreachable, refuses our login or holds an unexpected schema raises
# while `up` prepares it.
_PREPARE_ERRORS = (
    OSError,
    nats.errors.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlalchemy.exc.SQLAlchemyError,
    alembic.util.CommandError,
)


@contextlib.contextmanager
def data_lock(data_dir: Path) -> Iterator[None]:
    """One `unity up` per data folder; flock dies with its holder, so no stale lock survives."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fh: IO[str] = open(data_dir / "unity.lock", "a+")  # noqa: SIM115 -- held for the whole run
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise StackError(f"another `unity up` is running on {data_dir}") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


# A service up this long had a healthy run: its restart delay starts over from 2 s.
HEALTHY_RUN_S = 60.0


class Service:
    """A Unity service (`python -m compose <name>`) run as a child and restarted if it dies."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.pidfile = PidFile(settings.data_path / "run" / f"{name}.pid")
        self.log_path = settings.data_path / "logs" / f"{name}.log"
        self.restarts = 0
        self.next_start = 0.0
        self.started_at = 0.0

    def start(self) -> None:
        stale = self.pidfile.stale_process()
        if stale is not None:
            log.warning("stopping %s (pid %d) left by an earlier run", self.name, stale.pid)
            stop_process(stale, signal.SIGTERM, 20, self.name)
        argv = [sys.executable, "-m", "unity.compose", self.name]
        env = {k: v for k, v in os.environ.items() if k != "UNITY_CONFIG"}
        self.proc = spawn(argv, self.log_path, env=env | settings_env(self.settings))
        self.started_at = time.monotonic()
        self.pidfile.write(self.proc.pid)

    def restart_delay(self, ran_for: float) -> float:
        """Seconds to wait after an exit ``ran_for`` seconds after the start: 2, 4 ... 60, and
        2 again after a healthy run, so that a rare crash never keeps a service down long."""
        if ran_for >= HEALTHY_RUN_S:
            self.restarts = 0
        self.restarts += 1
        return min(2.0**self.restarts, 60.0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, signal.SIGTERM, 20, self.name)
        self.pidfile.remove()
        self.proc = None


def embedded_servers(settings: Settings) -> list[EmbeddedServer]:
    """The servers `up` must run itself: those not given by URL."""
    if settings.nats_url and settings.database_url and settings.valkey_url:
        return []
    data = settings.data_path
    secrets = Secrets.load_or_create(data)
    servers: list[EmbeddedServer] = []
    if not settings.nats_url:
        servers.append(
            NatsServer(
                data,
                settings.nats_port,
                secrets.nats_user,
                secrets.nats_password,
                listen=settings.nats_listen,
                root=settings.subject_root,
            )
        )
    if not settings.database_url:
        servers.append(
            PostgresServer(
                data, settings.postgres_port, secrets.postgres_password, settings.postgres_os_user
            )
        )
    if not settings.valkey_url:
        servers.append(ValkeyServer(data, settings.valkey_port, secrets.valkey_password))
    return servers


async def prepare(settings: Settings, ep: Endpoints) -> str | None:
    """Migrate, declare streams and consumers, and make the first admin token.

    Returns that token's secret when one was created (first start only), else None. A server
    that fails any step is a StackError saying which step and which server.
    """
    from unity.api.tokens import ensure_admin_token

    shown = ep.describe()
    with _step(f"migrating the database {shown['postgres']}"):
        await migrate.upgrade(ep)
    with _step(f"declaring the streams on {shown['nats']}"):
        nc = await connect_nats(ep, "unity-up", max_reconnect_attempts=3)
        try:
            js = nc.jetstream()
            await ensure_streams(js, settings)
            await ensure_consumers(js, settings)
        finally:
            await nc.close()
    with _step(f"checking the admin tokens in {shown['postgres']}"):
        return await ensure_admin_token(ep)


@contextlib.contextmanager
def _step(doing: str) -> Iterator[None]:
    try:
        yield
    except _PREPARE_ERRORS as exc:
        said = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise StackError(f"failed {doing}: {type(exc).__name__}: {said}") from exc


def api_url(settings: Settings) -> str:
    """The API's URL as `up` prints it and `status` probes it (a wildcard bind is reached on
    loopback)."""
    host = settings.api_bind
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 -- compared, not bound
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.api_tls_cert else "http"
    return f"{scheme}://{host}:{settings.api_port}/api/v1"


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as resp,  # noqa: S310 -- our own http URL
        ):
            if resp.status == 200:
                return True
        time.sleep(0.2)
    return False


class Stack:
    """Starts everything in order, supervises, and stops in reverse order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.servers: list[EmbeddedServer] = []
        self.services: list[Service] = []
        self._stop = False

    def request_stop(self, signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self._stop = True

    def run(self) -> int:
        settings = self.settings
        data = settings.data_path
        with data_lock(data):
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGTERM, self.request_stop)
            try:
                self._start(data)
                if not self._stop:
                    self._supervise()
            finally:
                self.shutdown()
        return 0

    def _start(self, data: Path) -> None:
        settings = self.settings
        ep = endpoints(settings)
        self.servers = embedded_servers(settings)
        for server in self.servers:
            if self._stop:
                return
            started = time.monotonic()
            server.start()
            log.info(
                "%s ready on port %d (%.1fs)", server.name, server.port, time.monotonic() - started
            )
        url = api_url(settings)
        admin_token = asyncio.run(prepare(settings, ep))
        if admin_token is not None:
            # Printed once, to the terminal only, as soon as it exists (the database keeps just
            # its hash): a service that fails to start next must not take the only copy with it.
            print(
                f"Admin token (shown once, keep it): {admin_token}\n"
                f"  e.g. curl -H 'Authorization: Bearer {admin_token}' {url}/latest\n"
                f"  more tokens: unity token create NAME --scope read",
                flush=True,
            )
        for name in SERVICES:
            service = Service(name, settings)
            service.start()
            self.services.append(service)
        api = next(s for s in self.services if s.name == "api")
        if not wait_http(f"{url}/health", 60, api.proc):
            raise StackError(f"the API did not come up; see {api.log_path}")
        print(
            f"Unity is up.\n"
            f"  API:       {url}  (try {url}/latest with a token)\n"
            f"  data:      {data}\n"
            + "".join(f"  {name + ':':<10} {where}\n" for name, where in self._data_elsewhere())
            + f"  logs:      {data / 'logs'}\n"
            + (
                f"  remote:    collectors of other machines connect to {remote_url(settings)};"
                " `unity collector add <host>` prints the line that starts one\n"
                if settings.nats_listen and not settings.nats_url
                else ""
            )
            + f"  servers:   {', '.join(f'{k}={v}' for k, v in ep.describe().items())}\n"
            f"Press Ctrl-C to stop.",
            flush=True,
        )

    def _data_elsewhere(self) -> list[tuple[str, Path]]:
        """Server data kept outside the data folder (PostgreSQL's, when run as root)."""
        data = self.settings.data_path
        return [
            (server.name, server.pgdata)
            for server in self.servers
            if isinstance(server, PostgresServer) and not server.pgdata.is_relative_to(data)
        ]

    def _supervise(self) -> None:
        while not self._stop:
            now = time.monotonic()
            for server in self.servers:
                if not server.alive() and not self._stop:
                    log.error("%s exited; restarting it (log: %s)", server.name, server.log_path)
                    server.start()
            for service in self.services:
                proc = service.proc
                if proc is not None and proc.poll() is not None and now >= service.next_start:
                    delay = service.restart_delay(now - service.started_at)
                    log.error(
                        "%s exited with code %s; restarting in %.0fs (log: %s)",
                        service.name,
                        proc.returncode,
                        delay,
                        service.log_path,
                    )
                    service.proc = None
                    service.next_start = now + delay
                elif service.proc is None and now >= service.next_start and not self._stop:
                    service.start()
            time.sleep(0.25)

    def shutdown(self) -> None:
        # Producers first, then ingest (finishes and acks its batch), then the servers.
        for service in reversed(self.services):
            service.stop()
        for server in reversed(self.servers):
            server.stop()
        log.info("stopped")
