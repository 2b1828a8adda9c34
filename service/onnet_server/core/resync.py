"""The re-sync token of Discover: which contact hashes an account has already paid for.

Each DiscoverResponse carries a token covering a set of contact hashes the account has paid
quota for. A later request proves what the token covers in one of two forms, and only
hashes outside that set are charged. The server keeps no per-account contact list: the
token is a MAC over the account and the set.

Token (45 bytes): version (1) || key id (4) || expires_at (8, big-endian unix seconds) ||
MAC (32), the MAC over domain || key id || expires_at || len(account) (1 byte) || account ||
set digest. Version 2: BLAKE2b with a 32-byte digest (RFC 7693), keyed with
HMAC-SHA256(token key, ``b"onnet/resync-mac/v2"``), and the domain ``b"onnet/resync/v2"``;
version 1: HMAC-SHA256 under the token key and ``b"onnet/resync/v1"``. Clients treat it as
opaque.

The set digest is a keyed additive set hash: each distinct hash h maps to a 128-bit value
v(h), and the digest D(S) is the sum of the values over S, lane by lane (two 64-bit lanes,
little-endian) modulo 2^64. Order does not change it, and it adds and subtracts:
D(S + T) = D(S) + D(T) for disjoint sets. The values:

- **version 2** (every token issued now): v(h) is the hash's fingerprint,
  AES-256(pepper, h[0:16]), the very value the lookup computes for h. One AES pass over a
  batch serves the lookup and the token (version 1 took three), and the MAC is keyed
  BLAKE2b (CPython's own in the Python paths; libcrypto's, the same function, in the
  compiled step that a lookup job runs off the event loop, core/resync_token.h). A
  token of version 2 therefore covers hash prefixes: two hashes with the same first 16
  bytes are one (the lookup cannot tell them apart either; two of 10^10 numbers share a
  prefix with probability about 2^-128 per pair).
- **version 1** (issued by earlier servers; verified until they expire, at most 90 days
  after the upgrade, then this can go): v(h) = AES(k, h[0:16] XOR AES(k, h[16:32])), a
  CBC-MAC under a key k derived from the token key, which cost two more AES passes. A
  version-1 token that verifies is answered with a version-2 token for the same set.

Without the pepper (or k) nobody can compute a value, so nobody can find another set with
the same sum: no value ever leaves the server (fingerprints are stored in the registry,
which clients never read; the MAC key is derived from the pepper, so whoever reads the
registry still cannot make a token). Distinct hashes are told apart by their values
(membership tests by the first 64-bit lane alone): keyed, so no client can steer two hashes
into one (two of 10^10 numbers collide with probability about 2^-64 per pair).

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
  the old form: the account and the expiry are under the MAC; the version is under it
  too (each version has its own domain string), so a token cannot be read as the other.

A token may be presented any number of times (it proves coverage; it is not spent): each
use is free only for hashes of its own C, which were paid for.

The commonest calls (a first sync; an unchanged book re-synced, the difference form with no
``added_hashes`` and no ``removed_hashes``) are decided by a compiled ``step`` that the
lookup job runs with the batch's digest, the lane sums of its distinct fingerprints, which
the probe's grouping gives for free. The paths below decide every other call, and any
that the step did not prove.

No sort of ``hashes`` is needed in the Python paths' common case. The sum over the uploaded
rows as they come (a repeated hash counted each time) is tried first, once each added hash has
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
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from onnet.protocol import CONTACT_HASH_SIZE
from onnet_server.core import _native, _resync_native
from onnet_server.core.block_cipher import BlockCipher
from onnet_server.core.errors import InvalidArgument
from onnet_server.core.fingerprint import Fingerprinter

__all__ = [
    "KEY_ID_SIZE",
    "KEY_SIZE",
    "TOKEN_SIZE",
    "ResyncKey",
    "ResyncTokens",
    "derive_resync_key",
]

KEY_ID_SIZE = 4
"""Bytes in the id of a MAC key."""

KEY_SIZE = 32
"""Bytes in a MAC key."""

TOKEN_SIZE = 45
"""Bytes in a token: version (1), key id (4), expiry (8), MAC (32)."""

_VERSION = 2
_VERSION_1 = 1
_HEADER_SIZE = 1 + KEY_ID_SIZE + 8
_DOMAINS = {_VERSION: b"onnet/resync/v2", _VERSION_1: b"onnet/resync/v1"}
_SET_KEY_LABEL = b"onnet/resync-set/v1"
_MAC_KEY_LABEL = b"onnet/resync-mac/v2"
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


@dataclass(frozen=True, eq=False)
class ResyncKey:
    """What tokens under one pepper need: the MAC key, and the pepper's fingerprints."""

    mac_key: bytes
    """The 32-byte HMAC key of the tokens (derived from the pepper)."""
    fingerprinter: Fingerprinter
    """The pepper's fingerprints: the set values of version-2 tokens."""

    def __post_init__(self) -> None:
        if len(self.mac_key) != KEY_SIZE:
            raise ValueError(f"resync keys must be {KEY_SIZE}-byte keys")


class _Signer:
    """One key's value functions and MACs, each set up once."""

    def __init__(self, key: ResyncKey) -> None:
        self.fingerprinter = key.fingerprinter
        # Version 2's BLAKE2b key: its own, not the HMAC key of version 1.
        self.blake2b_key = hmac.digest(key.mac_key, _MAC_KEY_LABEL, "sha256")
        # Keyed once: a MAC resumes from a copy of this state, after the key block.
        self.mac_prototype = hashlib.blake2b(key=self.blake2b_key, digest_size=32)
        # Version 1's CBC-MAC values, under a key derived from the token key.
        self._cipher = BlockCipher(hmac.digest(key.mac_key, _SET_KEY_LABEL, "sha256"))
        self._hmac = hmac.new(key.mac_key, digestmod="sha256")  # version 1's, keyed once

    def blocks(self, version: int, packed: bytes) -> bytes:
        """The set value of each packed 32-byte hash, in order, packed 16 bytes each."""
        if version == _VERSION:
            return self.fingerprinter.fingerprints(packed)
        if not packed:
            return b""
        first, second = _native.split_halves(packed)
        return self._cipher.encrypt(_native.xor_bytes(first, self._cipher.encrypt(second)))

    def values(self, version: int, packed: bytes) -> Values:
        """``blocks``' values as rows of two lanes."""
        return _as_values(self.blocks(version, packed))

    def mac(self, version: int, message: bytes) -> bytes:
        """The 32-byte MAC of ``message`` under this key, for a token of ``version``."""
        if version == _VERSION:
            blake = self.mac_prototype.copy()
            blake.update(message)
            return blake.digest()
        mac = self._hmac.copy()
        mac.update(message)
        return mac.digest()


def _as_values(blocks: bytes) -> Values:
    """Packed 16-byte values as rows of two 64-bit lanes (no copy)."""
    return np.frombuffer(blocks, dtype=np.uint64).reshape(-1, 2)


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


def _check_packed(field: str, packed: bytes) -> None:
    if len(packed) % CONTACT_HASH_SIZE:
        raise InvalidArgument(
            field, f"length {len(packed)} is not a multiple of {CONTACT_HASH_SIZE} bytes"
        )


class _Opened(NamedTuple):
    """A well-formed token, under a key of the keyring and not expired, taken apart.

    A named tuple: it is made on every re-sync, and a tuple is made in a fraction of the
    time of a frozen dataclass.
    """

    version: int
    key_id: bytes
    header: bytes
    mac: bytes


class ResyncTokens:
    """Issues and verifies re-sync tokens under a keyring of MAC keys.

    New tokens use the current key; tokens issued under any other key still in the keyring
    verify until they expire, so that rotating the pepper does not charge every client again.
    """

    def __init__(
        self,
        keys: Mapping[bytes, ResyncKey],
        current_key_id: bytes,
        ttl_seconds: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Key ``keys`` (4-byte id to key); tokens live ``ttl_seconds``.

        ``clock`` gives the current unix time in seconds (tests pass a fake one).
        """
        if any(len(kid) != KEY_ID_SIZE for kid in keys):
            raise ValueError(f"resync keys must have {KEY_ID_SIZE}-byte ids")
        if current_key_id not in keys:
            raise ValueError("current_key_id is not in the keyring")
        if ttl_seconds <= 0:
            raise ValueError("a token's lifetime (the resync token TTL) must be positive")
        self._signers = {kid: _Signer(key) for kid, key in keys.items()}
        self._current = current_key_id
        self._clock = clock
        self._compiled = _resync_native.CurrentTokens(
            current_key_id,
            self._signers[current_key_id].blake2b_key,
            _DOMAINS[_VERSION],
            ttl_seconds,
        )

    @classmethod
    def from_peppers(
        cls,
        pepper: bytes,
        *previous: bytes,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> ResyncTokens:
        """Tokens under ``pepper``'s key, still accepting those of the ``previous`` peppers."""
        current_id, current = derive_resync_key(pepper)
        keys = dict(derive_resync_key(old) for old in previous)
        keys[current_id] = current
        return cls(keys, current_id, ttl_seconds, clock=clock)

    @property
    def fingerprinter(self) -> Fingerprinter:
        """The current pepper's fingerprints: a lookup's are also its token's set values."""
        return self._signers[self._current].fingerprinter

    def issue(self, account: str, covered: bytes) -> bytes:
        """A token that lets ``account`` send ``covered`` (packed 32-byte hashes) for free.

        ``covered`` may be empty and may hold duplicates, in any order.
        """
        if len(covered) % CONTACT_HASH_SIZE:
            raise ValueError(f"covered is not a whole number of {CONTACT_HASH_SIZE}-byte hashes")
        return self.first_sync(account, covered, None)[1]

    def verify(self, token: bytes, account: str, previous_hashes: bytes) -> None:
        """Check that ``token`` was issued to ``account`` for exactly ``previous_hashes``.

        Raises InvalidArgument. A token that does not match (another account's, an altered
        one, or one sent with a different set of hashes) gets one message that does not say
        which, so a client cannot use the server to learn what a token covers.
        """
        self._verified_values(token, account, previous_hashes)

    def renew(
        self,
        account: str,
        token: bytes,
        previous_hashes: bytes,
        hashes: bytes,
        *,
        fingerprints: bytes | None = None,
    ) -> tuple[int, bytes]:
        """The old form: verify ``token`` (if any) for ``previous_hashes``; cover ``hashes``.

        Returns how many distinct hashes of ``hashes`` are not in ``previous_hashes`` (the
        quota charge) and the token that covers both sets. ``fingerprints``, when given, are
        those of ``hashes`` under the current pepper (a lookup's, reused). One pass: the
        previous set's values are computed once (twice when its token is of another key or
        version).
        """
        _check_packed("hashes", hashes)
        if not token:
            if previous_hashes:
                raise InvalidArgument("previous_hashes", "needs the token that covers them")
            return self.first_sync(account, hashes, fingerprints)
        previous, opened = self._verified_values(token, account, previous_hashes)
        if not self._is_current(opened):
            previous = self._current_values(previous_hashes, None)
        values = self._current_values(hashes, fingerprints)
        lanes = _lanes(previous)
        if len(values) == len(previous) and _lanes(values) == lanes:
            # The commonest call of all: an unchanged address book re-synced in one batch,
            # in any order. Equal keyed sums over as many hashes mean the same set as the
            # one just verified (which holds each hash once): nothing is new, and no sort
            # or membership test is needed.
            return 0, self._issue(account, lanes)
        asked = _distinct(values)
        fresh = asked[~np.isin(asked[:, 0], previous[:, 0], assume_unique=True)]
        return len(fresh), self._issue(account, _lanes(np.concatenate([previous, fresh])))

    def step(self, account: str, token: bytes) -> _resync_native.TokenStep:
        """The commonest calls' token, for a lookup job to issue or renew from its digest.

        ``token`` empty: a first sync, whose token the step issues. Else the difference
        form with no ``added_hashes`` and no ``removed_hashes`` (an unchanged book
        re-synced): a current token that covers exactly the batch's set (its digest, the
        lane sums of its distinct fingerprints under the current pepper) is renewed at no
        charge. The step's ``next_token`` is None when it proved nothing (another key or
        version, expired, malformed, or not covered): ``renew_difference`` decides then,
        refusals included. The same answers as ``first_sync`` and ``renew_difference``, a
        fraction of their steps, in C and off the event loop (core/resync_token.h).
        """
        return self._compiled.step(account, token, self._clock())

    def renew_difference(
        self,
        account: str,
        token: bytes,
        hashes: bytes,
        added_hashes: bytes,
        removed_hashes: bytes,
        *,
        fingerprints: bytes | None = None,
    ) -> tuple[int, bytes]:
        """The difference form: ``token`` covers ``hashes`` - ``added_hashes`` + ``removed_hashes``.

        Returns the quota charge (how many hashes ``added_hashes`` holds) and a token that
        covers exactly the distinct ``hashes``. ``fingerprints``, when given, are those of
        ``hashes`` under the current pepper (a lookup's, reused). Raises InvalidArgument
        naming ``added_hashes`` or ``removed_hashes`` when either holds a hash twice, or
        ``added_hashes`` one that ``hashes`` does not hold; naming ``token`` when the token
        does not verify (one message whatever the reason, as in ``verify``).
        """
        _check_packed("hashes", hashes)
        _check_packed("added_hashes", added_hashes)
        _check_packed("removed_hashes", removed_hashes)
        opened = self._opened(token)
        signer = self._signers[opened.key_id]
        current = self._is_current(opened)
        if current and fingerprints is not None:
            blocks = fingerprints
        else:
            blocks = signer.blocks(opened.version, hashes)
        lanes = _native.block_sums(blocks)
        charge, added_once = 0, True
        if added_hashes or removed_hashes:
            values = _as_values(blocks)
            added = _each_once("added_hashes", signer.values(opened.version, added_hashes))
            removed = _each_once("removed_hashes", signer.values(opened.version, removed_hashes))
            # The rows that hold an added hash: each of a few added hashes compared with
            # every row, no sort of the rows.
            holding = np.isin(values[:, 0], added[:, 0])
            if len(_first_rows(values[holding])) < len(added):
                raise InvalidArgument("added_hashes", "holds a hash that hashes does not hold")
            charge = len(added)
            change = _minus(_lanes(removed), _lanes(added))
            # If an added hash is in several rows, duplicates must collapse before the sum.
            added_once = int(holding.sum()) == charge
        else:
            change = (0, 0)
        rows = None
        if not (added_once and self._covers(opened, account, _plus(lanes, change))):
            # The sum over the rows as they came did not verify (with no hash twice it would
            # have: see the module docstring): collapse duplicates, the token covers a set.
            values = _as_values(blocks)
            rows = _first_rows(values)
            lanes = _lanes(values[rows])
            if not self._covers(opened, account, _plus(lanes, change)):
                raise InvalidArgument("token", _NOT_COVERED_DIFFERENCE)
        if current:
            return charge, self._issue(account, lanes)
        return charge, self._renewed(account, hashes, fingerprints, rows)

    def first_sync(
        self, account: str, hashes: bytes, fingerprints: bytes | None = None
    ) -> tuple[int, bytes]:
        """No token: every distinct hash of ``hashes`` is charged; the next token covers them.

        Returns the charge and the token. ``fingerprints``, when given, are those of
        ``hashes`` under the current pepper (a lookup's, reused).
        """
        # One compiled pass: how many distinct values, and their sum.
        distinct, first, second = _native.distinct_sums(self._current_blocks(hashes, fingerprints))
        return distinct, self._issue(account, (first, second))

    def _is_current(self, opened: _Opened) -> bool:
        """Whether ``opened`` has the values and the key of the tokens issued now."""
        return opened.version == _VERSION and opened.key_id == self._current

    def _current_blocks(self, packed: bytes, fingerprints: bytes | None) -> bytes:
        """The set values of ``packed`` for a token issued now (``fingerprints``, if known)."""
        if fingerprints is None:
            return self._signers[self._current].blocks(_VERSION, packed)
        return fingerprints

    def _current_values(self, packed: bytes, fingerprints: bytes | None) -> Values:
        """``_current_blocks`` as rows of two lanes."""
        return _as_values(self._current_blocks(packed, fingerprints))

    def _renewed(
        self,
        account: str,
        hashes: bytes,
        fingerprints: bytes | None,
        rows: npt.NDArray[np.intp] | None,
    ) -> bytes:
        """The token issued now covering the ``rows`` of ``hashes`` (all rows if None)."""
        values = self._current_values(hashes, fingerprints)
        return self._issue(account, _lanes(values if rows is None else values[rows]))

    def _opened(self, token: bytes) -> _Opened:
        """A well-formed token under a key of the keyring that has not expired, taken apart."""
        if len(token) != TOKEN_SIZE or token[0] not in _DOMAINS:
            raise InvalidArgument("token", "token is malformed")
        header, mac = token[:_HEADER_SIZE], token[_HEADER_SIZE:]
        key_id = header[1 : 1 + KEY_ID_SIZE]
        if key_id not in self._signers:
            raise InvalidArgument("token", "token was issued under a retired key; sync without it")
        if self._clock() >= int.from_bytes(header[1 + KEY_ID_SIZE :], "big"):
            raise InvalidArgument("token", "token expired; sync without it")
        return _Opened(token[0], key_id, header, mac)

    def _covers(self, opened: _Opened, account: str, lanes: Lanes) -> bool:
        """Whether ``opened`` is a token of ``account`` over the set of ``lanes``."""
        signer = self._signers[opened.key_id]
        message = _message(opened.header, account, _lanes_digest(lanes))
        expected = signer.mac(opened.version, message)
        return hmac.compare_digest(opened.mac, expected)

    def _verified_values(
        self, token: bytes, account: str, previous_hashes: bytes
    ) -> tuple[Values, _Opened]:
        """The values of ``previous_hashes`` for the token's key and version, and the token."""
        opened = self._opened(token)
        _check_packed("previous_hashes", previous_hashes)
        values = self._signers[opened.key_id].values(opened.version, previous_hashes)
        if not self._covers(opened, account, _lanes(values)):
            raise InvalidArgument("token", "token does not cover previous_hashes for this account")
        return values, opened

    def _issue(self, account: str, lanes: Lanes) -> bytes:
        """A current token, issued now to ``account``, for the set digest ``lanes``."""
        return self._compiled.issue(account, *lanes, self._clock())


def _message(header: bytes, account: str, digest: bytes) -> bytes:
    """What the MAC of a token that starts with ``header`` and covers ``digest`` is over."""
    name = account.encode("ascii")
    if len(name) > _MAX_ACCOUNT_LENGTH:
        raise ValueError(f"account id longer than {_MAX_ACCOUNT_LENGTH} characters")
    # The version byte is implied by the domain string; the rest of the header is bound.
    return _DOMAINS[header[0]] + header[1:] + bytes([len(name)]) + name + digest


def derive_resync_key(pepper: bytes) -> tuple[bytes, ResyncKey]:
    """The 4-byte key id and the key of re-sync tokens under ``pepper``.

    HKDF-SHA256 keeps the MAC key independent of the fingerprint key. The id is a hash of
    the derived key, not of the pepper, so a token reveals nothing about the pepper.
    """
    key = HKDF(algorithm=SHA256(), length=KEY_SIZE, salt=None, info=_HKDF_INFO).derive(pepper)
    return hashlib.sha256(key).digest()[:KEY_ID_SIZE], ResyncKey(key, Fingerprinter(pepper))
