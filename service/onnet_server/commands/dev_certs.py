"""Development TLS material: a throwaway CA and the certificates it signs.

For local runs and tests only. The CA's private key is written beside its certificate,
unencrypted, so whoever can read the directory can mint certificates that this CA vouches for:
never let a production server or client trust it.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_COMMON_NAME",
    "CLIENT_COMMON_NAME",
    "SERVICE_COMMON_NAME",
    "DevCerts",
    "make_dev_certs",
]

CA_COMMON_NAME = "onnet development CA"
"""The subject of the development CA."""
SERVICE_COMMON_NAME = "onnet-dev-service"
"""The subject of the client certificate for a trusted service."""
CLIENT_COMMON_NAME = "onnet-dev-client"
"""The subject of the client certificate for a plain client."""

_BACKDATE = datetime.timedelta(minutes=5)
"""How far before now the certificates become valid, so a peer whose clock runs a little behind
does not reject a certificate made a moment ago."""


@dataclasses.dataclass(frozen=True)
class DevCerts:
    """Where make_dev_certs wrote each file (certificates and keys are PEM)."""

    ca_cert: Path
    """The CA certificate: what servers and clients trust (ca.pem)."""
    ca_key: Path
    """The CA's private key, for signing more certificates (ca.key)."""
    server_cert: Path
    """The server certificate, valid for the requested hosts (server.pem)."""
    server_key: Path
    """The server's private key (server.key)."""
    service_cert: Path
    """The client certificate of a trusted service, CN onnet-dev-service (service.pem)."""
    service_key: Path
    """The trusted service's private key (service.key)."""
    client_cert: Path
    """The client certificate of a plain client, CN onnet-dev-client (client.pem)."""
    client_key: Path
    """The plain client's private key (client.key)."""


@dataclasses.dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _subject_alternative_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        # A client that dials an IP address matches it against IP-address entries only, so an
        # address written as a DNS name would never verify.
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(now: datetime.datetime, days: int) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(CA_COMMON_NAME))
        .issuer_name(_name(CA_COMMON_NAME))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        # path_length=0: this CA signs end-entity certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issued(cert, key)


def _issue(
    ca: _Issued,
    common_name: str,
    usage: x509.ObjectIdentifier,
    *,
    now: datetime.datetime,
    days: int,
    alternative_names: list[x509.GeneralName] | None = None,
) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # ECDSA keys sign the handshake; they never encipher a key, so that is all they may do.
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if alternative_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(alternative_names), critical=False
        )
    return _Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _write(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    if overwrite:
        # os.open's mode applies only to a file it creates: an old file would keep its old,
        # perhaps wider, permissions, so it goes first.
        path.unlink(missing_ok=True)
    # Created with its final mode, so a private key is never readable by others, even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def make_dev_certs(
    directory: Path,
    *,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 30,
    overwrite: bool = False,
) -> DevCerts:
    """Write a development CA, a server certificate and two client certificates to ``directory``.

    The server certificate names every entry of ``hosts`` (IP addresses as such, the rest as
    DNS names). The client certificates identify a trusted service (CN onnet-dev-service) and a
    plain client (CN onnet-dev-client). Private keys are unencrypted PKCS#8, mode 0600. The
    directory is created if missing. Raises FileExistsError, naming the file, when any of the
    eight files already exists, unless ``overwrite``; nothing is written in that case.
    """
    if not hosts:
        raise ValueError("hosts must name at least one host for the server certificate")
    if days < 1:
        raise ValueError("days must be at least 1")
    paths = DevCerts(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        service_cert=directory / "service.pem",
        service_key=directory / "service.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    if not overwrite:
        # Checked up front so that a refusal leaves no half-written set behind.
        for path in dataclasses.astuple(paths):
            if path.exists():
                raise FileExistsError(
                    errno.EEXIST, "already exists (overwrite=True replaces it)", str(path)
                )
    now = datetime.datetime.now(datetime.UTC)
    ca = _make_ca(now, days)
    server = _issue(
        ca,
        hosts[0],
        ExtendedKeyUsageOID.SERVER_AUTH,
        now=now,
        days=days,
        alternative_names=_subject_alternative_names(hosts),
    )
    service = _issue(ca, SERVICE_COMMON_NAME, ExtendedKeyUsageOID.CLIENT_AUTH, now=now, days=days)
    client = _issue(ca, CLIENT_COMMON_NAME, ExtendedKeyUsageOID.CLIENT_AUTH, now=now, days=days)
    directory.mkdir(parents=True, exist_ok=True)
    for issued, cert_path, key_path in (
        (ca, paths.ca_cert, paths.ca_key),
        (server, paths.server_cert, paths.server_key),
        (service, paths.service_cert, paths.service_key),
        (client, paths.client_cert, paths.client_key),
    ):
        key_pem = issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(key_path, key_pem, 0o600, overwrite=overwrite)
        cert_pem = issued.cert.public_bytes(serialization.Encoding.PEM)
        _write(cert_path, cert_pem, 0o644, overwrite=overwrite)
    return paths
