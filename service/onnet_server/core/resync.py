"""The re-sync token of Discover: which contact hashes an account has already paid for.

Each DiscoverResponse carries a token covering a set of contact hashes the account has paid
quota for. A later request proves what the token covers in one of two forms, and only
hashes outside that set are charged. The server keeps no per-account contact list: the
token is a MAC over the account and the set.

Token (45 bytes): version ``0x01`` || key id (4) || expires_at (8, big-endian unix seconds)
|| MAC (32), where MAC = HMAC-SHA256(key, ``b"onnet/resync/v1"`` || key id || expires_at ||
len(account) (1 byte) || account || set digest). Clients treat it as opaque.

The set digest is a keyed additive set hash: each distinct hash maps to a 128-bit value
v(h) = AES(k, h[0:16] XOR AES(k, h[16:32])) (CBC-MAC of its two blocks under a key derived
from the token key), and the digest D(S) is the sum of the values over S, lane by lane
modulo 2^64. Order does not change it, and it adds and subtracts: D(S + T) = D(S) + D(T) for
disjoint sets. Without the key nobody can compute a value, so nobody can find another set
with the same sum. Distinct hashes are told apart by their values (membership tests by the
first 64-bit lane alone): keyed, so no client can steer two hashes into one (two of 10^10
numbers collide with probability about 2^-64 per pair).

**The old form** (``renew``): ``previous_hashes`` is exactly the covered set C, each hash
once (a repeated hash adds its value twice and does not verify: the server spends no sort on
the field). The next token covers C plus the distinct ``hashes``; the charge is the distinct
hashes outside C. A re-sync uploads its book twice.

**The difference form** (``renew_difference``): ``previous_hashes`` is empty; the request
sends its book H (``hashes``), the hashes A of H that the token does not cover
(``added_hashes``) and the hashes R that it covers but H no longer holds
(``removed_hashes``). A and R hold each hash once, and A is a subset of H (cheap checks,
refused naming the field). The token verifies when

    D(C) == D(H) - D(A) + D(R)        (H taken as a set: duplicates collapse)

The charge is |A|, and the next token covers exactly H. A re-sync uploads its book once.

Why no client gains a free hash. Read the check as a sum over hashes: each h contributes
c(h) * v(h), where c(h) = [h in H] - [h in A] + [h in R] - [h in C], an integer between -1
and 2. The check holds for every choice of values when every c(h) is 0, that is when H - A
and R are disjoint and together make exactly C (a multiset identity: since C holds each
hash once, no hash may appear in both H - A and R). If some c(h) is not 0, the check is a
linear relation between keyed pseudo-random 128-bit values the client has never seen: it
holds with probability at most 2^-126 per request (2^-128 when some c(h) is odd; c(h) = 2
leaves one bit of each lane free), and each try is an online request, refused by a message
that does not say why. So a request that verifies has H - A inside C: every hash of H that
is not charged was paid for before. In particular:

- a hash of H left out of A that C does not hold has c(h) = 1: refused;
- a hash in R that C does not hold (a forged removal, to cancel a missing one) has c(h) = 1
  (or 2 if it is in H - A too): refused;
- a hash both in A and in R is in H (A is inside H), so c(h) = 1 - [h in C]: accepted only
  when C holds it, and then it is charged although it was paid for: the client only loses;
- duplicates in ``hashes`` collapse before the digest (the token covers a set, and each
  hash is charged once), so repeating a hash neither adds nor cancels anything; repeats
  in A or R are refused, so c(h) stays within the range above;
- a token of another account, an altered or truncated one, or an expired one fails as in
  the old form: the account and the expiry are under the MAC.

A token may be presented any number of times (it proves coverage; it is not spent): each
use is free only for hashes of its own C, which were paid for.

No sort of ``hashes`` is needed in the common case. The sum over the uploaded rows as
they come (a repeated hash counted each time) is tried first, once each added hash has
been found in exactly one row. If it verifies, ``hashes`` holds no hash twice: a hash h
repeated m >= 2 times has coefficient m - [h in A] + [h in R] - [h in C], which is 0 only
if h is in A (and C), and each hash of A is in one row only. That sum is then the next
token's too. Only when it does not verify, or an added hash comes twice, are duplicates
collapsed (a sort) and the check tried once more.

The two forms meet in one request: a token with ``previous_hashes``, ``added_hashes`` and
``removed_hashes`` all empty. It is read as the difference form (the token covers exactly
``hashes``). In the old form it would claim a token covering nothing, which no Discover
answer issues (``hashes`` holds at least one hash), so no old client sends it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from onnet import CONTACT_HASH_SIZE
from onnet_server.core import _native
from onnet_server.core.block_cipher import BlockCipher
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

_NOT_COVERED_DIFFERENCE = (
    "token does not cover hashes without added_hashes, plus removed_hashes, for this account"
)

Values = npt.NDArray[np.uint64]
"""Set-hash values: one row of two 64-bit lanes per hash."""

Lanes = tuple[int, int]
"""A set digest before it is serialized: two 64-bit lanes (Python ints: two numbers are
cheaper to add as ints than as a numpy array)."""

_LANE = (1 << 64) - 1
_DIGEST = struct.Struct("<QQ")


class _SetHash:
    """The keyed values of hashes, and digests of sets of them."""

    def __init__(self, token_key: bytes) -> None:
        self._cipher = BlockCipher(hmac.digest(token_key, _SET_KEY_LABEL, "sha256"))

    def values(self, packed: bytes) -> Values:
        """The value of each packed 32-byte hash, in order (two AES passes over the batch)."""
        if not packed:
            return np.empty((0, 2), dtype=np.uint64)
        first, second = _native.split_halves(packed)
        chained = _native.xor_bytes(first, self._cipher.encrypt(second))
        return np.frombuffer(self._cipher.encrypt(chained), dtype=np.uint64).reshape(-1, 2)


def _first_rows(values: Values) -> npt.NDArray[np.intp]:
    """The row of each distinct hash's first occurrence (told apart by their keyed values)."""
    return _native.first_rows(values)


def _distinct(values: Values) -> Values:
    """One row per distinct hash."""
    rows = _first_rows(values)
    return values[rows] if len(rows) < len(values) else values


def _each_once(field: str, values: Values) -> Values:
    """``values``, or InvalidArgument naming ``field`` when a hash comes twice."""
    if len(_first_rows(values)) < len(values):
        raise InvalidArgument(field, "holds a hash more than once")
    return values


def _lanes(values: Values) -> Lanes:
    """The set digest as its two lanes: sums modulo 2^64, which add and subtract as such."""
    return _native.lane_sums(values)


def _plus(left: Lanes, right: Lanes) -> Lanes:
    return (left[0] + right[0]) & _LANE, (left[1] + right[1]) & _LANE


def _minus(left: Lanes, right: Lanes) -> Lanes:
    return (left[0] - right[0]) & _LANE, (left[1] - right[1]) & _LANE


def _lanes_digest(lanes: Lanes) -> bytes:
    """The 16 bytes of a set digest."""
    return _DIGEST.pack(*lanes)


def _digest(values: Values) -> bytes:
    """The set digest of ``values`` (each hash once), 16 bytes."""
    return _lanes_digest(_lanes(values))


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
        """The old form: verify ``token`` (if any) for ``previous_hashes``; cover ``hashes``.

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

    def renew_difference(
        self,
        account: str,
        token: bytes,
        hashes: bytes,
        added_hashes: bytes,
        removed_hashes: bytes,
    ) -> tuple[int, bytes]:
        """The difference form: ``token`` covers ``hashes`` - ``added_hashes`` + ``removed_hashes``.

        Returns the quota charge (how many hashes ``added_hashes`` holds) and a token that
        covers exactly the distinct ``hashes``. Raises InvalidArgument naming
        ``added_hashes`` or ``removed_hashes`` when either holds a hash twice, or
        ``added_hashes`` one that ``hashes`` does not hold; naming ``token`` when the token
        does not verify (one message whatever the reason, as in ``verify``).
        """
        _check_packed("hashes", hashes)
        _check_packed("added_hashes", added_hashes)
        _check_packed("removed_hashes", removed_hashes)
        key_id, header, mac = self._opened(token)
        key, sets = self._keys[key_id], self._sets[key_id]
        values = sets.values(hashes)
        lanes = _lanes(values)
        charge, added_once = 0, True
        if added_hashes or removed_hashes:
            added = _each_once("added_hashes", sets.values(added_hashes))
            removed = _each_once("removed_hashes", sets.values(removed_hashes))
            charge = self._check_added(values, added)
            change = _minus(_lanes(removed), _lanes(added))
            # If an added hash is in several rows, duplicates must collapse before the sum.
            added_once = charge == int(np.isin(values[:, 0], added[:, 0]).sum())
        else:
            change = (0, 0)
        if added_once and self._covers(key, header, account, _plus(lanes, change), mac):
            # No sort: the sum over the rows as they came verified, so no hash came twice
            # (see the module docstring), and that sum is the next token's too.
            if key_id == self._current:
                return charge, self._issue_digest(account, _lanes_digest(lanes))
            return charge, self._renewed(account, key_id, hashes, values, None)
        rows = _first_rows(values)  # duplicates collapse: the token covers a set
        if not self._covers(key, header, account, _plus(_lanes(values[rows]), change), mac):
            raise InvalidArgument("token", _NOT_COVERED_DIFFERENCE)
        return charge, self._renewed(account, key_id, hashes, values, rows)

    @staticmethod
    def _check_added(values: Values, added: Values) -> int:
        """How many hashes ``added`` holds; InvalidArgument if one is not among ``values``."""
        # Each of a few added hashes compared with every row: no sort.
        if not np.isin(added[:, 0], values[:, 0]).all():
            raise InvalidArgument("added_hashes", "holds a hash that hashes does not hold")
        return len(added)

    def _renewed(
        self,
        account: str,
        key_id: bytes,
        hashes: bytes,
        values: Values,
        rows: npt.NDArray[np.intp] | None,
    ) -> bytes:
        """The token covering the ``rows`` of ``hashes`` (all rows if None) under the current key.

        ``values`` are those of ``hashes`` under ``key_id``, reused when it is the current key.
        """
        if key_id != self._current:
            values = self._sets[self._current].values(hashes)
        return self._issue_digest(account, _digest(values if rows is None else values[rows]))

    def _opened(self, token: bytes) -> tuple[bytes, bytes, bytes]:
        """The key id, header and MAC of a well-formed, current ``token``."""
        if len(token) != TOKEN_SIZE or token[0] != _VERSION:
            raise InvalidArgument("token", "token is malformed")
        header, mac = token[:_HEADER_SIZE], token[_HEADER_SIZE:]
        key_id = header[1 : 1 + KEY_ID_SIZE]
        if key_id not in self._keys:
            raise InvalidArgument("token", "token was issued under a retired key; sync without it")
        if self._clock() >= int.from_bytes(header[1 + KEY_ID_SIZE :], "big"):
            raise InvalidArgument("token", "token expired; sync without it")
        return key_id, header, mac

    def _covers(self, key: bytes, header: bytes, account: str, lanes: Lanes, mac: bytes) -> bool:
        """Whether ``mac`` is the MAC of a token of ``account`` over the set of ``lanes``."""
        expected = self._mac(key, header, account, _lanes_digest(lanes))
        return hmac.compare_digest(mac, expected)

    def _verified_values(
        self, token: bytes, account: str, previous_hashes: bytes
    ) -> tuple[Values, bytes]:
        """The values of ``previous_hashes`` under the token's key, and the key id."""
        key_id, header, mac = self._opened(token)
        _check_packed("previous_hashes", previous_hashes)
        values = self._sets[key_id].values(previous_hashes)
        if not self._covers(self._keys[key_id], header, account, _lanes(values), mac):
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
