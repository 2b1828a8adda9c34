"""TLS for the server: credentials from PEM files, and who the verified client is.

With a client CA the server requires mutual TLS: a client must present a certificate signed by
that CA, and the handshake fails otherwise, before any RPC runs. The client's certificate then
identifies it to the servicers through the call's auth context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import grpc

from onnet.protocol import CERTIFICATE, PRIVATE_KEY, read_pem
from onnet_server.config import ConfigError

__all__ = ["TlsConfigError", "peer_common_name", "server_credentials"]


class TlsConfigError(ConfigError):
    """A TLS file cannot be read or does not hold what it should; the message names it."""


def _read_pem(path: Path, what: str, holds: str) -> bytes:
    try:
        return read_pem(path, what, holds)
    except ValueError as error:
        raise TlsConfigError(str(error)) from None


def server_credentials(
    cert_file: Path, key_file: Path, client_ca_file: Path | None = None
) -> grpc.ServerCredentials:
    """TLS credentials for ``server.add_secure_port`` from PEM files.

    ``cert_file`` is the server's certificate chain and ``key_file`` its unencrypted private
    key. With ``client_ca_file``, clients must present a certificate signed by one of the CAs
    it holds (mutual TLS); without it, clients are not asked for one. Raises TlsConfigError,
    naming the file, when a file cannot be read or does not hold what it should.
    """
    chain = _read_pem(cert_file, "certificate file", CERTIFICATE)
    key = _read_pem(key_file, "key file", PRIVATE_KEY)
    client_ca = (
        None if client_ca_file is None else _read_pem(client_ca_file, "client CA file", CERTIFICATE)
    )
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def peer_common_name(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The common name of the client's certificate, from ``context.auth_context()``, or None.

    None when the client presented no certificate (plaintext, or TLS without a client CA) or
    its certificate has no usable common name.
    Trust it only on a server built with ``client_ca_file``: only then has gRPC verified the
    certificate against a CA before the call runs.
    """
    names = list(auth_context.get("x509_common_name", ()))
    # Exactly one name, in valid UTF-8, or no identity at all: a name that needed guessing
    # must not be mistaken for another.
    if len(names) != 1:
        return None
    try:
        return names[0].decode("utf-8") or None
    except UnicodeDecodeError:
        return None
