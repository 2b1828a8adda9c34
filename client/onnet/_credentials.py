"""Bearer credentials: JSON Web Tokens (RFC 7519) that the caller's issuer signs.

A call presents ``authorization: Bearer <JWT>``. The server verifies it against the issuer's
public keys, a JWKS (RFC 7517), with no call to the issuer. Any issuer of standard JWTs
works (an identity provider, an account service with its own JOSE library): the claims it
must set are in docs/protocol.md, "Credentials". This module holds the names both sides
agree on, and, for development and tests, a minimal issuer: ``issue_token`` signs with an
Ed25519 key (EdDSA) that ``new_signing_key_pem`` makes and ``public_jwks`` publishes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from onnet._errors import OnnetError

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "DEFAULT_MAX_LIFETIME",
    "JWT_ALGORITHMS",
    "KIND_ACCOUNT",
    "KIND_CLAIM",
    "KIND_SERVICE",
    "MAX_SUBJECT_LENGTH",
    "MAX_TOKEN_LENGTH",
    "METADATA_KEY",
    "KeyFileError",
    "bearer",
    "issue_token",
    "key_id",
    "load_signing_key",
    "new_signing_key_pem",
    "public_jwks",
]

KIND_ACCOUNT = "account"
"""A credential held by an end user's account: subject to per-account quota."""

KIND_SERVICE = "service"
"""A credential held by a backend service (the account service itself, operators' tools)."""

JWT_ALGORITHMS = ("EdDSA", "ES256", "RS256")
"""The JWS algorithms a credential may be signed with: a server accepts those of them it is
configured for (ONNET_AUTH_ALGORITHMS), each only with a key of its own type."""

KIND_CLAIM = "onnet_kind"
"""The claim that says which kind a credential is, unless the server is told another."""

DEFAULT_ISSUER = "onnet-dev"
"""The ``iss`` a server expects unless configured (ONNET_AUTH_ISSUER), and ``onnet token``'s."""

DEFAULT_AUDIENCE = "onnet"
"""The ``aud`` a server expects unless configured (ONNET_AUTH_AUDIENCE)."""

MAX_TOKEN_LENGTH = 4096
"""Longest token text accepted; anything longer is refused before it is parsed (an RS256
JWT with a 4096-bit key is about 1,000 characters)."""

DEFAULT_MAX_LIFETIME = 3600
"""Longest lifetime (``exp - iat``, seconds) a server accepts unless told otherwise."""

MAX_SUBJECT_LENGTH = 64
"""Longest subject; subjects are 1 to 64 characters of printable ASCII, like user ids."""

METADATA_KEY = "authorization"
"""The gRPC metadata key that carries ``Bearer <token>``."""

_KINDS = frozenset({KIND_ACCOUNT, KIND_SERVICE})
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))
# A whole PEM block, its label captured; the END line must repeat the BEGIN line's label.
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


class KeyFileError(OnnetError, ValueError):
    """A key file does not hold what it should; the message names the file and the problem."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """The JWK thumbprint (RFC 7638, SHA-256, base64url) of ``public_key``: its ``kid``."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64encode(public_key.public_bytes_raw())}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")
    return _b64encode(hashlib.sha256(canonical).digest())


def public_jwks(*public_keys: Ed25519PublicKey) -> dict[str, Any]:
    """A JWKS document (RFC 7517) of ``public_keys``, for ONNET_AUTH_JWKS."""
    return {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": _b64encode(key.public_bytes_raw()),
                "kid": key_id(key),
                "alg": "EdDSA",
                "use": "sig",
            }
            for key in public_keys
        ]
    }


def issue_token(
    signing_key: Ed25519PrivateKey,
    subject: str,
    kind: str,
    ttl_seconds: int,
    *,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    now: float | None = None,
) -> str:
    """A JWT (EdDSA) for ``subject`` of ``kind``, valid for ``ttl_seconds`` from ``now``.

    For development and tests: production credentials come from the company's issuer.
    ``now`` defaults to the current time. A subject that is not 1 to 64 printable ASCII
    characters, an unknown kind or a non-positive lifetime raises ValueError: a server
    would refuse such a token anyway.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be {KIND_ACCOUNT!r} or {KIND_SERVICE!r}")
    if not (0 < len(subject) <= MAX_SUBJECT_LENGTH and _PRINTABLE_ASCII.issuperset(subject)):
        raise ValueError(f"subject must be 1 to {MAX_SUBJECT_LENGTH} printable ASCII characters")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    issued_at = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        KIND_CLAIM: kind,
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
    }
    headers = {"kid": key_id(signing_key.public_key()), "typ": "JWT"}
    return jwt.encode(claims, signing_key, algorithm="EdDSA", headers=headers)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that presents ``token``: ``(("authorization", "Bearer <token>"),)``."""
    return ((METADATA_KEY, f"Bearer {token}"),)


def new_signing_key_pem() -> bytes:
    """A fresh Ed25519 signing key as unencrypted PKCS8 PEM (keep the file private)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read the one unencrypted PKCS8 PEM Ed25519 private key in the file at ``path``.

    Raises KeyFileError for a file that holds anything else, OSError for one that cannot be read.
    """
    data = Path(path).read_bytes()
    blocks = [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
    if len(blocks) != len(_PEM_BEGIN.findall(data)):
        raise KeyFileError(f"{path}: a PEM block has no matching END line")
    labels = [label for label, _ in blocks]
    if "ENCRYPTED PRIVATE KEY" in labels:
        raise KeyFileError(f"{path}: the private key is encrypted; an unencrypted one is needed")
    private = [block for label, block in blocks if label == "PRIVATE KEY"]
    if len(private) != 1:
        raise KeyFileError(
            f"{path}: expected exactly one PKCS8 'PRIVATE KEY' PEM block, found {len(private)}"
        )
    try:
        key = serialization.load_pem_private_key(private[0], password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: the PEM block is not a valid private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: holds a private key of another type, not Ed25519")
    return key


def _b64encode(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
