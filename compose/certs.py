"""A small certificate authority for one Unity deployment: `unity certs init` and `issue`.

One CA per deployment signs a server certificate (NATS, PostgreSQL, Valkey and the API share
it, each name and address they are reached by in its SANs) and client certificates (one per
collector host or role, for mutual TLS). Keys are P-256, written 0600; certificates 0644. The
CA key signs nothing else and can be moved offline once every certificate is issued.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest a browser accepts for a server certificate


class CertError(RuntimeError):
    """The CA is missing or already there, or a name cannot go in a certificate."""


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Authority:
    """The CA's files in ``folder``: ``ca.crt`` (give it to every client) and ``ca.key``."""

    folder: Path

    @property
    def cert_path(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def key_path(self) -> Path:
        return self.folder / "ca.key"

    def exists(self) -> bool:
        return self.cert_path.exists() and self.key_path.exists()

    def load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if not self.exists():
            raise CertError(f"no CA in {self.folder}: run `unity certs init` first")
        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertError(f"{self.key_path} is not an EC key made by `unity certs init`")
        return cert, key


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Unity"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def init_ca(folder: Path, *, force: bool = False, days: int = CA_DAYS) -> Authority:
    """Make a new CA in ``folder``; refuses to replace one unless ``force`` (a rotation)."""
    ca = Authority(folder)
    if ca.exists() and not force:
        raise CertError(f"a CA already exists in {folder} (rotate with --force, then reissue)")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Unity deployment CA"))
        .issuer_name(_name("Unity deployment CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(ca.key_path, _key_pem(key), 0o600)
    _write(ca.cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return ca


def _alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not name or any(c.isspace() for c in name):
                raise CertError(f"{name!r} is neither a host name nor an IP address") from None
            alt.append(x509.DNSName(name))
    return alt


def issue(
    ca: Authority,
    stem: str,
    *,
    common_name: str,
    names: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    days: int = LEAF_DAYS,
) -> Issued:
    """Sign a leaf certificate, written as ``<stem>.crt`` and ``<stem>.key`` beside the CA.

    Args:
        ca: The deployment's CA.
        stem: File name without extension (``server``, ``client-nas``).
        common_name: The subject's CN (a host name for a collector, a role for a service).
        names: Host names and IP addresses for the SAN (a server is checked against them).
        server: Usable by a server (serverAuth).
        client: Usable by a client for mutual TLS (clientAuth).
        days: Validity.
    """
    if not (server or client):
        raise CertError("a certificate is for a server, a client or both")
    if server and not names:
        raise CertError("a server certificate needs the names it is reached by")
    ca_cert, ca_key = ca.load()
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usages = [
        *([ExtendedKeyUsageOID.SERVER_AUTH] if server else []),
        *([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []),
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_alt_names(names)), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    issued = Issued(ca.folder / f"{stem}.crt", ca.folder / f"{stem}.key")
    _write(issued.key, _key_pem(key), 0o600)
    _write(issued.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return issued


def init(
    folder: Path,
    *,
    names: Sequence[str],
    clients: Sequence[str] = (),
    force: bool = False,
) -> tuple[Authority, Issued, list[Issued]]:
    """A CA, a server certificate for ``names`` (loopback is always added) and client ones."""
    ca = init_ca(folder, force=force)
    all_names = list(dict.fromkeys([*names, "localhost", "127.0.0.1", "::1"]))
    # clientAuth too: NATS nodes present it to each other on their (mutual TLS) routes.
    server = issue(
        ca, "server", common_name=all_names[0], names=all_names, server=True, client=True
    )
    leaves = [issue(ca, f"client-{c}", common_name=c, client=True) for c in clients]
    return ca, server, leaves
