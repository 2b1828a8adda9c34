"""The re-sync token of Discover: which contact hashes an account has already paid for.

Each DiscoverResponse carries a token covering every contact hash the account has paid quota
for. On the next sync the client sends it back with exactly those hashes in
``previous_hashes``, which then cost nothing; only hashes outside that set are charged. The
server keeps no per-account contact list: the token is a MAC over the account and the set.

Token (45 bytes): version ``0x01`` || key id (4) || expires_at (8, big-endian unix seconds)
|| MAC (32), where MAC = HMAC-SHA256(key, ``b"onnet/resync/v1"`` || key id || expires_at ||
len(account) (1 byte) || account || set digest), and the set digest is SHA-256 over the
distinct hashes sorted bytewise, so neither order nor duplicates change it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from onnet import CONTACT_HASH_SIZE
from onnet_server.core.errors import InvalidArgument

__all__ = [
    "KEY_ID_SIZE",
    "KEY_SIZE",
    "TOKEN_SIZE",
    "ResyncTokens",
    "covered_union",
    "derive_resync_key",
    "new_hashes",
]

KEY_ID_SIZE = 4
"""Bytes in the id of a MAC key."""

KEY_SIZE = 32
"""Bytes in a MAC key."""

TOKEN_SIZE = 45
"""Bytes in a token: version (1), key id (4), expiry (8), MAC (32)."""

_VERSION = 1
_HEADER_SIZE = 1 + KEY_ID_SIZE + 8
_DOMAIN = b"onnet/resync/v1"
_HKDF_INFO = b"onnet/resync-token/v1"
_MAX_ACCOUNT_LENGTH = 255
# One element per contact hash: numpy sorts and compares unstructured void items as raw
# bytes (memcmp order), which is exactly the bytewise order the set digest is defined by.
_HASH_ITEM = np.dtype((np.void, CONTACT_HASH_SIZE))


class ResyncTokens:
    """Issues and verifies re-sync tokens under a keyring of MAC keys.

    New tokens use the current key; tokens issued under any other key still in the keyring
    verify until they expire, so that rotating the pepper does not charge every client again.
    """

    def __init__(
        self,
        keys: Mapping[bytes, bytes],
        current_key_id: bytes,
        ttl_seconds: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Key ``keys`` (4-byte id to 32-byte key); tokens live ``ttl_seconds``.

        ``clock`` gives the current unix time in seconds (tests pass a fake one).
        """
        for kid, key in keys.items():
            if len(kid) != KEY_ID_SIZE or len(key) != KEY_SIZE:
                raise ValueError(
                    f"resync keys must map {KEY_ID_SIZE}-byte ids to {KEY_SIZE}-byte keys"
                )
        if current_key_id not in keys:
            raise ValueError("current_key_id is not in the keyring")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._keys = dict(keys)
        self._current = current_key_id
        self._ttl = ttl_seconds
        self._clock = clock

    def issue(self, account: str, covered: bytes) -> bytes:
        """A token that lets ``account`` send ``covered`` (packed 32-byte hashes) for free.

        ``covered`` may be empty and may hold duplicates, in any order.
        """
        if len(covered) % CONTACT_HASH_SIZE:
            raise ValueError(f"covered is not a whole number of {CONTACT_HASH_SIZE}-byte hashes")
        header = bytes([_VERSION]) + self._current + self._expiry_bytes()
        return header + self._mac(self._keys[self._current], header, account, covered)

    def verify(self, token: bytes, account: str, previous_hashes: bytes) -> None:
        """Check that ``token`` was issued to ``account`` for exactly ``previous_hashes``.

        Raises InvalidArgument. A token that does not match (another account's, an altered
        one, or one sent with a different set of hashes) gets one message that does not say
        which, so a client cannot use the server to learn what a token covers.
        """
        if len(token) != TOKEN_SIZE or token[0] != _VERSION:
            raise InvalidArgument("token", "token is malformed")
        header, mac = token[:_HEADER_SIZE], token[_HEADER_SIZE:]
        key = self._keys.get(header[1 : 1 + KEY_ID_SIZE])
        if key is None:
            raise InvalidArgument("token", "token was issued under a retired key; sync without it")
        if self._clock() >= int.from_bytes(header[1 + KEY_ID_SIZE :], "big"):
            raise InvalidArgument("token", "token expired; sync without it")
        if len(previous_hashes) % CONTACT_HASH_SIZE:
            raise InvalidArgument(
                "previous_hashes",
                f"length {len(previous_hashes)} is not a multiple of {CONTACT_HASH_SIZE} bytes",
            )
        if not hmac.compare_digest(mac, self._mac(key, header, account, previous_hashes)):
            raise InvalidArgument("token", "token does not cover previous_hashes for this account")

    def _expiry_bytes(self) -> bytes:
        """When a token issued now expires, as 8 big-endian bytes."""
        return (int(self._clock()) + self._ttl).to_bytes(8, "big")

    @staticmethod
    def _mac(key: bytes, header: bytes, account: str, covered: bytes) -> bytes:
        """The MAC of a token that starts with ``header`` and covers ``covered``."""
        name = account.encode("ascii")
        if len(name) > _MAX_ACCOUNT_LENGTH:
            raise ValueError(f"account id longer than {_MAX_ACCOUNT_LENGTH} characters")
        digest = hashlib.sha256(_distinct(covered).tobytes()).digest()
        # The version byte is implied by the domain string; the rest of the header is bound.
        message = _DOMAIN + header[1:] + bytes([len(name)]) + name + digest
        return hmac.digest(key, message, "sha256")


def covered_union(previous_hashes: bytes, hashes: bytes) -> bytes:
    """The distinct hashes of both packed inputs, sorted bytewise and packed.

    This is what the next token covers; clients send it as ``previous_hashes`` next time.
    """
    return _distinct(previous_hashes + hashes).tobytes()


def new_hashes(hashes: bytes, previous_hashes: bytes) -> int:
    """How many distinct hashes of ``hashes`` are not in ``previous_hashes``: the quota charge."""
    return len(_distinct(previous_hashes + hashes)) - len(_distinct(previous_hashes))


def derive_resync_key(pepper: bytes) -> tuple[bytes, bytes]:
    """The (4-byte key id, 32-byte MAC key) of re-sync tokens, derived from the pepper.

    HKDF-SHA256 keeps the MAC key independent of the fingerprint key. The id is a hash of
    the derived key, not of the pepper, so a token reveals nothing about the pepper.
    """
    key = HKDF(algorithm=SHA256(), length=KEY_SIZE, salt=None, info=_HKDF_INFO).derive(pepper)
    return hashlib.sha256(key).digest()[:KEY_ID_SIZE], key


def _distinct(packed: bytes) -> npt.NDArray[Any]:
    """The distinct 32-byte hashes of ``packed``, sorted bytewise, one void item each."""
    return np.unique(np.frombuffer(packed, dtype=_HASH_ITEM))
