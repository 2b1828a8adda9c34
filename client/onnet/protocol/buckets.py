"""Private mode's bucket entries: what the server stores per user, and how a client opens one.

A user's OPRF output T (64 bytes, known only to the server's key holder and to whoever knows
the number) names everything: the 32-bit prefix that places the entry in a bucket, an 8-byte
tag (of T and the entry's nonce) that lets a client find its entry among the bucket's
others, and the key that seals the user id (ChaCha20-Poly1305). The id is padded to a
multiple of 16 bytes, so that entries of ids up to 15 characters all look alike; the tag
changes with every registration, so that a number passing to a new holder does not show.
Without T an entry is random bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = ["PREFIX_SIZE", "bucket_of", "open_entry", "prefix_of", "seal_entry"]

PREFIX_SIZE = 4
"""Bytes of T kept as the bucket prefix (buckets use its first bits)."""
_TAG_SIZE = 8
_NONCE_SIZE = 12


def _key(output: bytes) -> bytes:
    return hashlib.sha256(b"onnet/bucket-key/v1" + output).digest()


def _tag(output: bytes, nonce: bytes) -> bytes:
    return hashlib.sha256(b"onnet/bucket-tag/v1" + output + nonce).digest()[:_TAG_SIZE]


_PAD = 16


def _pad(user_id: str) -> bytes:
    raw = user_id.encode("ascii")
    if len(raw) > 255:
        raise ValueError("a user id is at most 255 bytes")
    padded = bytes([len(raw)]) + raw
    return padded + bytes(-len(padded) % _PAD)


def _unpad(padded: bytes) -> str | None:
    length = padded[0] if padded else 0
    if not padded or length + 1 > len(padded):
        return None
    return padded[1 : 1 + length].decode("ascii")


def prefix_of(output: bytes) -> int:
    """The 32-bit bucket prefix of an OPRF output."""
    return int.from_bytes(output[:PREFIX_SIZE], "big")


def bucket_of(output: bytes, bits: int) -> int:
    """The bucket of an OPRF output when buckets are named by ``bits`` bits (0 to 32)."""
    return prefix_of(output) >> (32 - bits) if bits else 0


def seal_entry(output: bytes, user_id: str) -> bytes:
    """Tag || nonce || sealed user id, openable only with ``output``."""
    return _seal_entry_with(output, user_id, os.urandom(_NONCE_SIZE))


def _seal_entry_with(output: bytes, user_id: str, nonce: bytes) -> bytes:
    tag = _tag(output, nonce)
    sealed = ChaCha20Poly1305(_key(output)).encrypt(nonce, _pad(user_id), tag)
    return tag + nonce + sealed


def open_entry(output: bytes, entry: bytes) -> str | None:
    """The user id in ``entry`` if it was sealed for ``output``, else None."""
    if len(entry) <= _TAG_SIZE + _NONCE_SIZE:
        return None
    nonce, sealed = entry[_TAG_SIZE : _TAG_SIZE + _NONCE_SIZE], entry[_TAG_SIZE + _NONCE_SIZE :]
    tag = _tag(output, nonce)
    if not hmac.compare_digest(entry[:_TAG_SIZE], tag):
        return None
    try:
        return _unpad(ChaCha20Poly1305(_key(output)).decrypt(nonce, sealed, tag))
    except (InvalidTag, UnicodeDecodeError):
        return None
