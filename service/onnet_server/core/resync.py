"""The re-sync token of Discover: which contact hashes an account has already paid for.

Each DiscoverResponse carries a token covering every contact hash the account has paid quota
for. On the next sync the client sends it back with exactly those hashes in
``previous_hashes``, which then cost nothing; only hashes outside that set are charged. The
server keeps no per-account contact list: the token is a MAC over the account and the set.

Token (45 bytes): version ``0x01`` || key id (4) || expires_at (8, big-endian unix seconds)
|| MAC (32), where MAC = HMAC-SHA256(key, ``b"onnet/resync/v1"`` || key id || expires_at ||
len(account) (1 byte) || account || set digest). Clients treat it as opaque.

The set digest is a keyed additive set hash: each distinct hash maps to a 128-bit value
v(h) = AES(k, h[0:16] XOR AES(k, h[16:32])) (CBC-MAC of its two blocks under a key derived
from the token key), and the digest is the sum of the values, lane by lane modulo 2^64.
Order does not change it, and it extends by addition: a re-sync adds the new hashes' values
to the previous sum without re-reading anything. The token covers a set, and
``previous_hashes`` must be that set, each hash once (a repeated hash adds its value twice
and does not verify): the server spends no sort on a request's largest field. Without the key
nobody can compute a value, so nobody can find another set with the same sum. Distinct
hashes are told apart by their first 64-bit lane: keyed, so no client can steer two hashes
into one (two of 10^10 numbers collide with probability about 2^-64 per pair).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from onnet import CONTACT_HASH_SIZE
from onnet_server.core.errors import InvalidArgument

__all__ = [
    "KEY_ID_SIZE",
    "KEY_SIZE",
    "TOKEN_SIZE",
    "ResyncTokens",
    "derive_resync_key",
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
_SET_KEY_LABEL = b"onnet/resync-set/v1"
_HKDF_INFO = b"onnet/resync-token/v1"
_MAX_ACCOUNT_LENGTH = 255
_BLOCK = 16

Values = npt.NDArray[np.uint64]
"""Set-hash values: one row of two 64-bit lanes per hash."""


class _SetHash:
    """The keyed values of hashes, and digests of sets of them."""

    def __init__(self, token_key: bytes) -> None:
        key = hmac.digest(token_key, _SET_KEY_LABEL, "sha256")
        # ECB is the point, as for fingerprints: every block is an independent PRP input
        # and one call covers a whole batch.
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305

    def values(self, packed: bytes) -> Values:
        """The value of each packed 32-byte hash, in order (two library calls in all)."""
        rows = np.frombuffer(packed, dtype=np.uint8).reshape(-1, CONTACT_HASH_SIZE)
        encryptor = self._cipher.encryptor()
        second = encryptor.update(np.ascontiguousarray(rows[:, _BLOCK:]).tobytes())
        chained = np.bitwise_xor(
            rows[:, :_BLOCK], np.frombuffer(second, dtype=np.uint8).reshape(-1, _BLOCK)
        )
        values = encryptor.update(chained.tobytes()) + encryptor.finalize()
        return np.frombuffer(values, dtype=np.uint64).reshape(-1, 2)


def _distinct(values: Values) -> Values:
    """One row per distinct hash (told apart by the keyed first lane)."""
    if len(values) < 2:
        return values
    _, first = np.unique(values[:, 0], return_index=True)
    return values[first] if len(first) < len(values) else values


def _digest(values: Values) -> bytes:
    """The set digest: lane sums modulo 2^64, 16 bytes."""
    return bytes(values.sum(axis=0, dtype=np.uint64).astype("<u8").tobytes())


def _check_packed(field: str, packed: bytes) -> None:
    if len(packed) % CONTACT_HASH_SIZE:
        raise InvalidArgument(
            field, f"length {len(packed)} is not a multiple of {CONTACT_HASH_SIZE} bytes"
        )


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
        self._sets = {kid: _SetHash(key) for kid, key in keys.items()}
        self._current = current_key_id
        self._ttl = ttl_seconds
        self._clock = clock

    def issue(self, account: str, covered: bytes) -> bytes:
        """A token that lets ``account`` send ``covered`` (packed 32-byte hashes) for free.

        ``covered`` may be empty and may hold duplicates, in any order.
        """
        if len(covered) % CONTACT_HASH_SIZE:
            raise ValueError(f"covered is not a whole number of {CONTACT_HASH_SIZE}-byte hashes")
        values = _distinct(self._sets[self._current].values(covered))
        return self._issue_digest(account, _digest(values))

    def verify(self, token: bytes, account: str, previous_hashes: bytes) -> None:
        """Check that ``token`` was issued to ``account`` for exactly ``previous_hashes``.

        Raises InvalidArgument. A token that does not match (another account's, an altered
        one, or one sent with a different set of hashes) gets one message that does not say
        which, so a client cannot use the server to learn what a token covers.
        """
        self._verified_values(token, account, previous_hashes)

    def renew(
        self, account: str, token: bytes, previous_hashes: bytes, hashes: bytes
    ) -> tuple[int, bytes]:
        """Verify ``token`` (if any) for ``previous_hashes``; count and cover ``hashes``.

        Returns how many distinct hashes of ``hashes`` are not in ``previous_hashes`` (the
        quota charge) and the token that covers both sets. One pass: the previous set's
        values are computed once (twice when its token came from a previous pepper).
        """
        _check_packed("hashes", hashes)
        current = self._sets[self._current]
        if token:
            previous, key_id = self._verified_values(token, account, previous_hashes)
            if key_id != self._current:
                previous = current.values(previous_hashes)
        else:
            _check_packed("previous_hashes", previous_hashes)
            previous = current.values(previous_hashes)
        values = current.values(hashes)
        digest = _digest(previous)
        if token and len(values) == len(previous) and _digest(values) == digest:
            # The commonest call of all: an unchanged address book re-synced in one batch,
            # in any order. Equal keyed sums over as many hashes mean the same set as the
            # one just verified (which holds each hash once): nothing is new, and no sort
            # or membership test is needed.
            return 0, self._issue_digest(account, digest)
        asked = _distinct(values)
        fresh = asked[~np.isin(asked[:, 0], previous[:, 0], assume_unique=True)]
        digest = _digest(np.concatenate([previous, fresh]))
        return len(fresh), self._issue_digest(account, digest)

    def _verified_values(
        self, token: bytes, account: str, previous_hashes: bytes
    ) -> tuple[Values, bytes]:
        """The values of ``previous_hashes`` under the token's key, and the key id."""
        if len(token) != TOKEN_SIZE or token[0] != _VERSION:
            raise InvalidArgument("token", "token is malformed")
        header, mac = token[:_HEADER_SIZE], token[_HEADER_SIZE:]
        key_id = header[1 : 1 + KEY_ID_SIZE]
        key = self._keys.get(key_id)
        if key is None:
            raise InvalidArgument("token", "token was issued under a retired key; sync without it")
        if self._clock() >= int.from_bytes(header[1 + KEY_ID_SIZE :], "big"):
            raise InvalidArgument("token", "token expired; sync without it")
        _check_packed("previous_hashes", previous_hashes)
        values = self._sets[key_id].values(previous_hashes)
        expected = self._mac(key, header, account, _digest(values))
        if not hmac.compare_digest(mac, expected):
            raise InvalidArgument("token", "token does not cover previous_hashes for this account")
        return values, key_id

    def _issue_digest(self, account: str, digest: bytes) -> bytes:
        header = bytes([_VERSION]) + self._current + self._expiry_bytes()
        return header + self._mac(self._keys[self._current], header, account, digest)

    def _expiry_bytes(self) -> bytes:
        """When a token issued now expires, as 8 big-endian bytes."""
        return (int(self._clock()) + self._ttl).to_bytes(8, "big")

    @staticmethod
    def _mac(key: bytes, header: bytes, account: str, digest: bytes) -> bytes:
        """The MAC of a token that starts with ``header`` and covers the set of ``digest``."""
        name = account.encode("ascii")
        if len(name) > _MAX_ACCOUNT_LENGTH:
            raise ValueError(f"account id longer than {_MAX_ACCOUNT_LENGTH} characters")
        # The version byte is implied by the domain string; the rest of the header is bound.
        message = _DOMAIN + header[1:] + bytes([len(name)]) + name + digest
        return hmac.digest(key, message, "sha256")


def derive_resync_key(pepper: bytes) -> tuple[bytes, bytes]:
    """The (4-byte key id, 32-byte MAC key) of re-sync tokens, derived from the pepper.

    HKDF-SHA256 keeps the MAC key independent of the fingerprint key. The id is a hash of
    the derived key, not of the pepper, so a token reveals nothing about the pepper.
    """
    key = HKDF(algorithm=SHA256(), length=KEY_SIZE, salt=None, info=_HKDF_INFO).derive(pepper)
    return hashlib.sha256(key).digest()[:KEY_ID_SIZE], key
