"""The README's first command on a fresh copy of this checkout, the way new users run it: as root
with the clone under a 0700 home, as root in a world-readable folder, as an ordinary user, on
each Python the machine has (3.11, 3.12, 3.13). Each installs into a venv of its own from a
wheelhouse built once per Python version, then `unity down --purge` must leave nothing behind.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from unity.compose.embedded import free_port

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[2]
PYENV = Path("/root/.pyenv/versions")
README_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[server]' && .venv/bin/unity up"
)
# What a homelab user expects to see at once, without writing a config.
EXPECTED = {"cpu", "memory", "disk", "net", "system"}
WAIT_S = 240.0  # a deadline against hangs (installing included), not a timing assertion


def _python(version: str) -> Path | None:
    found = sorted(PYENV.glob(f"{version}.*/bin/python3"))
    return found[-1] if found else None


def _copy_checkout(target: Path) -> None:
    """The working tree as a fresh clone would have it (tracked and new files, no ignored)."""
    listed = subprocess.run(
        ["git", "-C", str(CHECKOUT), "ls-files", "-co", "--exclude-standard", "-z"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = CHECKOUT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="session")
def shared_base() -> Iterator[Path]:
    # 0755: an ordinary user must read the wheelhouses in it.
    base = Path(tempfile.mkdtemp(prefix="unity-first-start-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


_wheelhouses: dict[str, Path] = {}


def _wheelhouse(base: Path, python: Path) -> Path:
    """Every wheel the project needs for one Python version, built once per session."""
    key = python.resolve().parent.parent.name
    if key not in _wheelhouses:
        source = base / f"src-{len(_wheelhouses)}"
        _copy_checkout(source)
        house = base / f"wheels-{len(_wheelhouses)}"
        argv = [str(python), "-m", "pip", "wheel", "-q", "--wheel-dir", str(house)]
        # async-timeout: valkey needs it below Python 3.11.3 (Debian 12's 3.11.2 uses these).
        extra = ["setuptools", "async-timeout"]
        subprocess.run(
            [*argv, f"{source}[server]", *extra], check=True, capture_output=True, timeout=900
        )
        for entry in house.iterdir():
            entry.chmod(0o644)
        house.chmod(0o755)
        _wheelhouses[key] = house
    return _wheelhouses[key]


@dataclass
class FirstStart:
    clone: Path
    env: dict[str, str]
    user: str | None
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['UNITY_API_PORT']}/api/v1"

    def start(self, python: Path) -> None:
        # The README's command, with this Python first on PATH as `python3`.
        bindir = self.clone.parent / "bin"
        bindir.mkdir(exist_ok=True)
        (bindir / "python3").symlink_to(python)
        self.env["PATH"] = f"{bindir}{os.pathsep}{self.env['PATH']}"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["sh", "-c", README_COMMAND],
                cwd=self.clone,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=self.user,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, plugins: set[str]) -> float:
        started = time.monotonic()
        while time.monotonic() - started < WAIT_S:
            assert self.proc is not None and self.proc.poll() is None, self.output()
            token = re.search(r"Admin token \(shown once, keep it\): (\S+)", self.output())
            if token and "Unity is up." in self.output():
                try:
                    resp = httpx.get(
                        f"{self.api}/latest",
                        params={"host": "first-start"},
                        headers={"Authorization": f"Bearer {token[1]}"},
                        timeout=5,
                    )
                except httpx.HTTPError:
                    resp = None
                if resp is not None and resp.status_code == 200:
                    seen = {item["plugin"] for item in resp.json()["items"]}
                    if seen >= plugins:
                        return time.monotonic() - started
            time.sleep(0.5)
        raise AssertionError(f"no {sorted(plugins)} in /latest within {WAIT_S}s:\n{self.output()}")

    def purge(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.clone / ".venv" / "bin" / "unity"), "down", "--purge"],
            cwd=self.clone,
            env=self.env,
            user=self.user,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _environment(home: Path, house: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNITY_", "PIP_", "VIRTUAL"))}
    env.update(
        HOME=str(home),
        # pip reads these: the install comes from the session's wheelhouse, offline.
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(house),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UNITY_API_PORT=str(free_port()),
        UNITY_NATS_PORT=str(free_port()),
        UNITY_POSTGRES_PORT=str(free_port()),
        UNITY_VALKEY_PORT=str(free_port()),
        UNITY_COLLECT_INTERVAL="2",
        UNITY_HOST_NAME="first-start",
    )
    return env


def _run_first_start(start: FirstStart, python: Path) -> None:
    try:
        start.start(python)
        took = start.wait_for(EXPECTED)
        print(f"{python}: {sorted(EXPECTED)} in /latest {took:.0f}s after the command")
        elsewhere = re.search(r"^  postgres:\s+(\S+)$", start.output(), re.M)
        purged = start.purge()
        assert purged.returncode == 0, purged.stderr
        assert start.proc is not None and start.proc.wait(60) == 0, start.output()
        assert not (start.clone / ".unity").exists()
        if elsewhere:
            assert not Path(elsewhere[1]).exists(), "PostgreSQL's cluster outlived the purge"
    finally:
        start.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="these layouts are root's")
@pytest.mark.parametrize(
    ("version", "layout"),
    [("3.11", "closed-home"), ("3.12", "open-folder"), ("3.13", "closed-home")],
)
def test_first_start_as_root(shared_base: Path, version: str, layout: str) -> None:
    python = _python(version)
    if python is None:
        pytest.skip(f"no Python {version} under {PYENV}")
    house = _wheelhouse(shared_base, python)
    # /tmp/<base> is open to all; the home in it is root's own 0700 one, or world-readable.
    base = shared_base / f"root-{version}-{layout}"
    home = base / "root-home"
    home.mkdir(parents=True)
    home.chmod(0o700 if layout == "closed-home" else 0o755)
    clone = home / "unity"
    _copy_checkout(clone)
    start = FirstStart(clone, _environment(home, house), None, base / "up.log")
    _run_first_start(start, python)


@pytest.fixture
def ordinary_user() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("creating a user to run as needs root")
    if shutil.which("useradd") is None:
        pytest.skip("no useradd to create an ordinary user")
    name = f"ue2e{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        # Anything of the test's own user still running is a leak: ended by pid, then reported.
        leaked = [p for p in psutil.process_iter(["username"]) if p.info["username"] == name]
        for proc in leaked:
            proc.kill()
        subprocess.run(["userdel", "-r", name], check=False, capture_output=True)
        assert not leaked, f"processes of {name} left running: {leaked}"


def test_first_start_as_an_ordinary_user(shared_base: Path, ordinary_user: str) -> None:
    # pyenv's Pythons live under /root: an ordinary user runs the system's.
    python = Path("/usr/bin/python3")
    if not python.exists():
        pytest.skip("no /usr/bin/python3 for an ordinary user")
    # Debian's Python has no pip of its own; its venvs do. The wheels are pyenv 3.11's (the
    # same ABI, cp311).
    builder = _python("3.11")
    if builder is None:
        pytest.skip(f"no Python 3.11 under {PYENV} to build the wheels with")
    house = _wheelhouse(shared_base, builder)
    entry = pwd.getpwnam(ordinary_user)
    home = Path(entry.pw_dir)
    clone = home / "unity"
    _copy_checkout(clone)
    subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(home)], check=True)
    home.chmod(0o700)
    start = FirstStart(clone, _environment(home, house), ordinary_user, shared_base / "user.log")
    _run_first_start(start, python)


def test_the_readme_shows_the_command_these_tests_run() -> None:
    assert README_COMMAND in (CHECKOUT / "README.md").read_text()
