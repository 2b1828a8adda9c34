"""TLS channel credentials from PEM files, checked when they are built.

gRPC itself reads nothing until the first connection, where a missing or malformed file shows
up only as an UNAVAILABLE status; reading the files here names the culprit at once.
"""

from __future__ import annotations

from pathlib import Path

import grpc

__all__ = ["CERTIFICATE", "PRIVATE_KEY", "channel_credentials", "read_pem"]


CERTIFICATE = "a certificate"
"""What a CA or certificate file holds (``read_pem``'s ``holds``)."""
PRIVATE_KEY = "a private key"
"""What a key file holds (``read_pem``'s ``holds``)."""

_MARKERS = {CERTIFICATE: b"-----BEGIN CERTIFICATE-----", PRIVATE_KEY: b"PRIVATE KEY-----"}


def read_pem(path: str | Path, what: str, holds: str) -> bytes:
    """The PEM bytes of ``path``, which must hold ``holds`` (CERTIFICATE or PRIVATE_KEY).

    ValueError names the file, ``what`` it should be, and what it holds instead (a key
    given where a certificate belongs is the commonest mix-up).
    """
    # gRPC would read nothing until the first handshake and then fail it without naming the
    # file, so files are read and checked up front.
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"the {what} {path} holds no PEM data")
    if _MARKERS[holds] not in data:
        other = PRIVATE_KEY if holds == CERTIFICATE else CERTIFICATE
        found = other if _MARKERS[other] in data else "other PEM data"
        raise ValueError(f"the {what} {path} holds {found}, not {holds}")
    return data


def channel_credentials(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials for ``Client(..., credentials=...)`` and the other clients.

    ``ca_file`` holds the PEM certificates trusted to sign the server's certificate; without it
    the system's roots are trusted. ``cert_file`` and ``key_file`` (PEM, unencrypted key) are
    this client's own certificate for servers that require one (mutual TLS), and come as a
    pair. Raises ValueError, naming the file, when a file cannot be read or holds no PEM.
    """
    if (cert_file is None) != (key_file is None):
        raise ValueError(
            "cert_file and key_file must be given together: "
            "a client certificate is useless without its private key"
        )
    return grpc.ssl_channel_credentials(
        root_certificates=None if ca_file is None else read_pem(ca_file, "CA file", CERTIFICATE),
        private_key=None if key_file is None else read_pem(key_file, "key file", PRIVATE_KEY),
        certificate_chain=(
            None if cert_file is None else read_pem(cert_file, "certificate file", CERTIFICATE)
        ),
    )
