"""Signed bearer credentials: issued by the account service, checked offline by the server.

A token is ``v1.<kid>.<payload>.<signature>``:

- ``kid``: the key id of the signer's public key (see ``key_id``);
- ``payload``: base64url, unpadded, of the compact JSON
  ``{"sub": str, "kind": "account" | "service", "iat": int, "exp": int}`` (unix seconds);
- ``signature``: base64url, unpadded, of the Ed25519 signature over the ASCII text
  ``v1.<kid>.<payload>``.

The server holds only public keys, so a leaked server cannot mint credentials, and verifying
needs no call to the account service. A public key file may hold several keys, so that a new
signing key can be announced before it is used and an old one kept until its tokens expire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "DEFAULT_MAX_LIFETIME",
    "KIND_ACCOUNT",
    "KIND_SERVICE",
    "MAX_SUBJECT_LENGTH",
    "MAX_TOKEN_LENGTH",
    "METADATA_KEY",
    "Credential",
    "CredentialError",
    "CredentialVerifier",
    "KeyFileError",
    "bearer",
    "issue_token",
    "key_id",
    "load_public_keys",
    "load_signing_key",
    "new_signing_key_pem",
    "public_key_pem",
]

KIND_ACCOUNT = "account"
"""A credential held by an end user's account: subject to per-account quota."""

KIND_SERVICE = "service"
"""A credential held by a backend service (the account service itself, operators' tools)."""

MAX_TOKEN_LENGTH = 2048
"""Longest token text accepted; anything longer is refused before it is parsed."""

DEFAULT_MAX_LIFETIME = 3600
"""Longest lifetime (``exp - iat``, seconds) a verifier accepts unless told otherwise."""

MAX_SUBJECT_LENGTH = 64
"""Longest subject; subjects are 1 to 64 characters of printable ASCII, like user ids."""

METADATA_KEY = "authorization"
"""The gRPC metadata key that carries ``Bearer <token>``."""

_VERSION = "v1"
_KINDS = frozenset({KIND_ACCOUNT, KIND_SERVICE})
_PAYLOAD_KEYS = frozenset({"sub", "kind", "iat", "exp"})
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_SIGNATURE_SIZE = 64
# A whole PEM block, its label captured; the END line must repeat the BEGIN line's label.
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


@dataclass(frozen=True)
class Credential:
    """What a verified token says about its bearer."""

    subject: str
    """The account or service id the token was issued to."""
    kind: str
    """``KIND_ACCOUNT`` or ``KIND_SERVICE``."""
    expires_at: int
    """Unix time (seconds) at which the token stops being accepted, leeway aside."""


class CredentialError(ValueError):
    """A token was refused.

    The message says why in terms safe to return to the client and to log: it never contains
    the token, its subject, or anything else taken from it.
    """


class KeyFileError(ValueError):
    """A key file does not hold what it should; the message names the file and the problem."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key id of ``public_key``: the first 8 bytes of SHA-256 of its raw 32 bytes, in hex."""
    return hashlib.sha256(public_key.public_bytes_raw()).digest()[:8].hex()


def issue_token(
    signing_key: Ed25519PrivateKey,
    subject: str,
    kind: str,
    ttl_seconds: int,
    *,
    now: float | None = None,
) -> str:
    """Return a token for ``subject`` of ``kind``, valid for ``ttl_seconds`` from ``now``.

    ``now`` defaults to the current time. A subject that is not 1 to 64 printable ASCII
    characters, an unknown kind or a non-positive lifetime raises ValueError: the verifier
    would refuse such a token anyway.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be {KIND_ACCOUNT!r} or {KIND_SERVICE!r}")
    if not _is_valid_subject(subject):
        raise ValueError(f"subject must be 1 to {MAX_SUBJECT_LENGTH} printable ASCII characters")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    issued_at = int(time.time() if now is None else now)
    claims = {"sub": subject, "kind": kind, "iat": issued_at, "exp": issued_at + ttl_seconds}
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode("ascii"))
    signed = f"{_VERSION}.{key_id(signing_key.public_key())}.{payload}"
    return f"{signed}.{_b64encode(signing_key.sign(signed.encode('ascii')))}"


class CredentialVerifier:
    """Verifies tokens against a set of trusted public keys, with no network call."""

    def __init__(
        self,
        public_keys: Iterable[Ed25519PublicKey],
        *,
        leeway_seconds: int = 60,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Trust ``public_keys``; allow ``leeway_seconds`` of clock skew with the issuer.

        A token whose lifetime (``exp - iat``) exceeds ``max_lifetime_seconds`` is refused,
        however it was signed: a stolen credential must not stay useful for long.
        ``clock`` gives the current unix time in seconds (tests pass a fake one).
        """
        self._keys = {key_id(key): key for key in public_keys}
        if not self._keys:
            raise ValueError("at least one public key is needed to verify credentials")
        if leeway_seconds < 0:
            raise ValueError("leeway_seconds must not be negative")
        if max_lifetime_seconds <= 0:
            raise ValueError("max_lifetime_seconds must be positive")
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        self._clock = clock

    def verify(self, token: str) -> Credential:
        """Return the credential ``token`` carries, or raise CredentialError saying why not."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise CredentialError(f"token is longer than {MAX_TOKEN_LENGTH} characters")
        parts = token.split(".")
        if len(parts) != 4:
            raise CredentialError("token is malformed: expected 4 dot-separated parts")
        version, kid, payload_text, signature_text = parts
        if version != _VERSION:
            raise CredentialError(f"token version is not {_VERSION}")
        if not _KEY_ID.fullmatch(kid):
            raise CredentialError("token is malformed: bad key id")
        public_key = self._keys.get(kid)
        if public_key is None:
            raise CredentialError("token is signed by an unknown key")
        payload = _b64decode(payload_text)
        signature = _b64decode(signature_text)
        if payload is None or signature is None or len(signature) != _SIGNATURE_SIZE:
            raise CredentialError("token is malformed: bad base64url")
        # The signature covers the text as sent; nothing in the payload is looked at before
        # it is known to come from the issuer.
        try:
            public_key.verify(signature, f"{version}.{kid}.{payload_text}".encode("ascii"))
        except InvalidSignature:
            raise CredentialError("token signature is invalid") from None
        return self._check_claims(payload)

    def _check_claims(self, payload: bytes) -> Credential:
        """The credential in a payload whose signature has been verified."""
        try:
            claims = json.loads(payload)
        except ValueError:
            raise CredentialError("token payload is malformed") from None
        if not isinstance(claims, dict) or claims.keys() != _PAYLOAD_KEYS:
            raise CredentialError("token payload is malformed")
        subject, kind, issued_at, expires_at = (claims[k] for k in ("sub", "kind", "iat", "exp"))
        # bool is an int subclass; a JSON true is not a time.
        if not all(type(t) is int for t in (issued_at, expires_at)) or expires_at <= issued_at:
            raise CredentialError("token payload is malformed")
        if kind not in _KINDS:
            raise CredentialError("token kind is not recognized")
        if not isinstance(subject, str) or not _is_valid_subject(subject):
            raise CredentialError(
                f"token subject is not 1 to {MAX_SUBJECT_LENGTH} printable ASCII characters"
            )
        if expires_at - issued_at > self._max_lifetime:
            raise CredentialError(
                f"token lifetime exceeds the maximum of {self._max_lifetime} s; "
                "ask the account service for a shorter-lived one"
            )
        now = self._clock()
        if issued_at > now + self._leeway:
            raise CredentialError("token was issued in the future")
        if now >= expires_at + self._leeway:
            raise CredentialError("token expired")
        return Credential(subject=subject, kind=kind, expires_at=expires_at)


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


def public_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    """The public half of ``private_key`` as PEM (SubjectPublicKeyInfo), for verifiers."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read the one unencrypted PKCS8 PEM Ed25519 private key in the file at ``path``.

    Raises KeyFileError for a file that holds anything else, OSError for one that cannot be read.
    """
    blocks = _pem_blocks(path)
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


def load_public_keys(path: str | os.PathLike[str]) -> list[Ed25519PublicKey]:
    """Read the Ed25519 public keys in the file at ``path``: one or more PEM blocks, in order.

    Every PEM block must be a 'PUBLIC KEY' (a private key here is refused rather than used,
    since this file is meant to be copied to every server). Raises KeyFileError for a file
    that holds anything else, OSError for one that cannot be read.
    """
    blocks = _pem_blocks(path)
    if not blocks:
        raise KeyFileError(f"{path}: holds no PEM public key")
    keys: list[Ed25519PublicKey] = []
    for number, (label, block) in enumerate(blocks, start=1):
        if label != "PUBLIC KEY":
            raise KeyFileError(f"{path}: PEM block {number} is a {label!r}, not a 'PUBLIC KEY'")
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, UnsupportedAlgorithm):
            raise KeyFileError(f"{path}: PEM block {number} is not a valid public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{path}: PEM block {number} holds another type of key, not Ed25519")
        keys.append(key)
    return keys


def _pem_blocks(path: str | os.PathLike[str]) -> list[tuple[str, bytes]]:
    """The (label, whole block) of every PEM block in the file, refusing unterminated ones."""
    data = Path(path).read_bytes()
    blocks = [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
    if len(blocks) != len(_PEM_BEGIN.findall(data)):
        raise KeyFileError(f"{path}: a PEM block has no matching END line")
    return blocks


def _is_valid_subject(subject: str) -> bool:
    """Whether ``subject`` is 1 to 64 characters of printable ASCII."""
    return 0 < len(subject) <= MAX_SUBJECT_LENGTH and _PRINTABLE_ASCII.issuperset(subject)


def _b64encode(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Decode unpadded base64url, or None unless ``text`` is the canonical encoding.

    Canonical only: otherwise several spellings of one signature would all verify, and a
    token's text would not identify it.
    """
    if not _BASE64URL.fullmatch(text):
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        return None
    return data if _b64encode(data) == text else None
