"""TLS certificates of servers and files: days left, issuer, SANs, whether the chain verifies."""

from __future__ import annotations

import datetime as dt
import importlib.util
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from unity.sdk import Health, Metric, Plugin, Sink

if TYPE_CHECKING:
    from cryptography import x509

EXTRA = "needs the 'certificate' extra: pip install 'unity-telemetry[certificate]'"


class Endpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    port: int = 443
    # The name sent as SNI and checked against the SANs; default: host.
    server_name: str = ""
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}"


class CertificateConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    endpoints: list[Endpoint] = []
    # PEM files (the first certificate in each is the one reported).
    files: list[str] = []
    # A CA bundle to verify against instead of the system's (a homelab CA).
    ca_file: str = ""
    connect_timeout: float = 5.0


@dataclass
class Found:
    label: str
    source: str
    cert: x509.Certificate | None = None
    verified: bool | None = None
    verify_error: str = ""
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class CertificatePlugin(Plugin):
    id = "certificate"
    name = "TLS certificates"
    description = "Per TLS endpoint and PEM file: days left, issuer, SANs, chain valid."
    category = "network"
    Config = CertificateConfig
    metrics = (
        Metric("certificate_days_left", "days", "gauge", "days until notAfter (negative: expired)"),
        Metric("certificate_expiry_timestamp", "seconds", "gauge", "notAfter as a Unix time"),
        Metric("certificate_valid", "", "gauge", "1 when chain and host name verify, else 0"),
    )

    config: CertificateConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("cryptography") is None:
            return EXTRA
        if not (self.config.endpoints or self.config.files):
            return "no endpoints or files configured"
        return None

    def collect(self, sink: Sink) -> None:
        if importlib.util.find_spec("cryptography") is None:
            raise RuntimeError(EXTRA)
        found = [self.endpoint(e) for e in self.config.endpoints]
        found += [read_file(f) for f in self.config.files]
        self._errors = [f"{f.label}: {f.error}" for f in found if f.error]
        documents = []
        now = dt.datetime.now(dt.UTC)
        for item in found:
            if item.cert is None:
                continue
            labels = {"target": item.label}
            expires = item.cert.not_valid_after_utc
            sink.add(
                "certificate_days_left", round((expires - now).total_seconds() / 86400, 3), labels
            )
            sink.add("certificate_expiry_timestamp", expires.timestamp(), labels)
            if item.verified is not None:
                sink.add("certificate_valid", 1.0 if item.verified else 0.0, labels)
            documents.append(describe(item))
        if documents:
            bad = [d["target"] for d in documents if d.get("verified") is False]
            sink.event(
                "certificates",
                f"{len(documents)} certificate(s)"
                + (f", not valid: {', '.join(bad)}" if bad else ""),
                {"certificates": documents},
                "warning" if bad else "info",
            )

    def health(self) -> Health | None:
        if not self._errors:
            return None
        return Health("degraded", "; ".join(self._errors))

    def endpoint(self, endpoint: Endpoint) -> Found:
        from cryptography import x509

        item = Found(endpoint.label, f"{endpoint.host}:{endpoint.port}")
        sni = endpoint.server_name or endpoint.host
        strict = ssl.create_default_context(cafile=self.config.ca_file or None)
        try:
            der = self.handshake(endpoint, sni, strict)
            item.verified = True
        except ssl.SSLCertVerificationError as exc:
            item.verified = False
            item.verify_error = exc.verify_message or str(exc)
        except (OSError, ssl.SSLError) as exc:
            item.error = f"{type(exc).__name__}: {exc}"
            return item
        if not item.verified:
            # Read the certificate even though it does not verify: its expiry still matters.
            lax = ssl.create_default_context()
            lax.check_hostname = False
            lax.verify_mode = ssl.CERT_NONE
            try:
                der = self.handshake(endpoint, sni, lax)
            except (OSError, ssl.SSLError) as exc:
                item.error = f"{type(exc).__name__}: {exc}"
                return item
        item.cert = x509.load_der_x509_certificate(der)
        return item

    def handshake(self, endpoint: Endpoint, sni: str, context: ssl.SSLContext) -> bytes:
        timeout = self.config.connect_timeout
        with (
            socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        if der is None:
            raise ssl.SSLError("the server sent no certificate")
        return der


def read_file(path: str) -> Found:
    from cryptography import x509

    item = Found(path, path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        item.error = f"{type(exc).__name__}: {exc.strerror or exc}"
        return item
    try:
        item.cert = x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        try:
            item.cert = x509.load_der_x509_certificate(data)
        except ValueError:
            item.error = "not a PEM or DER certificate"
    return item


def describe(item: Found) -> dict[str, Any]:
    from cryptography import x509

    cert = item.cert
    assert cert is not None
    try:
        sans = [
            str(n.value)
            for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ]
    except x509.ExtensionNotFound:
        sans = []
    doc: dict[str, Any] = {
        "target": item.label,
        "source": item.source,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "self_signed": cert.subject == cert.issuer,
        "sans": sans,
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }
    if item.verified is not None:
        doc["verified"] = item.verified
    if item.verify_error:
        doc["verify_error"] = item.verify_error
    return doc
