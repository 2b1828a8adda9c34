"""Where the registry lives in Redis, and how a record is packed (pure; no I/O).

Users are spread over ``GROUPS`` slot groups by a digest of their user id. Everything about
a user lives in their group, whose keys share one hash tag, so every change is one atomic
script on one cluster slot:

    onnet:{gNN}:u:BBBB   hash  user_id -> record (24 bytes: fingerprint, flags, version)
    onnet:{gNN}:b:USER   set of the fingerprints USER blocked (absent when none)
    onnet:{gNN}:log      stream of changes: op (put, del, block, unblock), user, seq, and for
                         a del its version; never a fingerprint or a private-mode entry (a
                         reader takes the user's record or blocklist from the keys above).
                         Trimmed to about STREAM_MAXLEN (a process further behind than that
                         reloads a snapshot); an erasure or a displacement also deletes the
                         user's earlier entries, and only its own del stays.
    onnet:{gNN}:seq      the sequence number of the group's last change (gap detection)
    onnet:{gNN}:ver      the group's last version (versions only grow within a group)
    onnet:epoch          a random marker of the data set; a Redis that lost its data lacks it
    onnet:pepper         the id and a check value of the pepper that built the registry
                         (redis_pepper); never the key

Each group's users are spread again over ``BUCKETS`` small hashes, so that each stays in
Redis's compact listpack encoding (128 entries by default; see README for larger
registries). A record is 24 bytes: the 16-byte fingerprint, one flag byte, and a 7-byte
big-endian version (microseconds of Redis time, kept increasing within the group); then,
for a discoverable user, the private-mode bucket entry (4-byte prefix, sealed user id).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from onnet_server.core.fingerprint import FINGERPRINT_SIZE

__all__ = ["BUCKETS", "GROUPS", "STREAM_MAXLEN", "Layout", "UserRecord", "parse_records"]

GROUPS = 16
BUCKETS = 4096
STREAM_MAXLEN = 20_000
RECORD_SIZE = FINGERPRINT_SIZE + 1 + 7
_DISCOVERABLE = 0x01


@dataclass(frozen=True)
class UserRecord:
    """A user's record as Redis holds it."""

    fingerprint: bytes
    discoverable: bool
    version: int
    private_entry: bytes = b""

    @classmethod
    def unpack(cls, value: bytes) -> UserRecord:
        """Read a record: 24 fixed bytes, then the private-mode entry, if any."""
        if len(value) < RECORD_SIZE:
            raise ValueError(f"a record is at least {RECORD_SIZE} bytes, not {len(value)}")
        flags = value[FINGERPRINT_SIZE]
        version = int.from_bytes(value[FINGERPRINT_SIZE + 1 : RECORD_SIZE], "big")
        return cls(
            value[:FINGERPRINT_SIZE], bool(flags & _DISCOVERABLE), version, value[RECORD_SIZE:]
        )


def parse_records(
    values: list[bytes],
) -> tuple[bytes, npt.NDArray[np.uint64], npt.NDArray[np.bool_], list[bytes]]:
    """Many records at once: (packed fingerprints, versions, discoverable flags, entries)."""
    if any(len(value) < RECORD_SIZE for value in values):
        raise ValueError(f"a record is at least {RECORD_SIZE} bytes")
    fixed = b"".join(value[:RECORD_SIZE] for value in values)
    entries = [value[RECORD_SIZE:] for value in values]
    table = np.frombuffer(fixed, dtype=np.uint8).reshape(-1, RECORD_SIZE)
    fingerprints = np.ascontiguousarray(table[:, :FINGERPRINT_SIZE]).tobytes()
    flags = table[:, FINGERPRINT_SIZE]
    versions = np.zeros(len(values), dtype=np.uint64)
    for byte in table[:, FINGERPRINT_SIZE + 1 :].T:  # 7 bytes, big-endian
        versions = (versions << np.uint64(8)) | byte.astype(np.uint64)
    return fingerprints, versions, (flags & _DISCOVERABLE).astype(bool), entries


def flags_byte(discoverable: bool) -> bytes:
    """The flag byte of a record."""
    return bytes([_DISCOVERABLE if discoverable else 0])


@dataclass(frozen=True)
class Layout:
    """Key names under a prefix (default "onnet")."""

    prefix: str = "onnet"

    def group_of(self, user_id: str) -> tuple[int, int]:
        """(group, bucket) of a user: a digest, so neither can be steered by the caller."""
        digest = int.from_bytes(hashlib.sha256(user_id.encode("ascii")).digest()[:8], "big")
        return digest % GROUPS, (digest // GROUPS) % BUCKETS

    def _tag(self, group: int) -> str:
        return f"{self.prefix}:{{g{group:02d}}}"

    def bucket_key(self, group: int, bucket: int) -> str:
        """The hash holding a bucket of the group's users."""
        return f"{self._tag(group)}:u:{bucket:04d}"

    def epoch_key(self) -> str:
        """A random marker of this Redis's data, set once; its loss means the data was lost."""
        return f"{self.prefix}:epoch"

    def pepper_key(self) -> str:
        """The public identity of the pepper that built this registry (see redis_pepper)."""
        return f"{self.prefix}:pepper"

    def group_pattern(self) -> str:
        """A SCAN pattern for every key of every group: the registry but its epoch and pepper."""
        return f"{self.prefix}:{{g[0-9][0-9]}}:*"

    def is_bucket_key(self, key: str) -> bool:
        """Whether ``key`` (of the group pattern) is a bucket of users' records."""
        return key.split(":", 3)[2] == "u"

    def is_blocks_key(self, key: str) -> bool:
        """Whether ``key`` (of the group pattern) is a user's blocklist."""
        return key.split(":", 3)[2] == "b"

    def blocks_key(self, user_id: str) -> str:
        """The set of fingerprints ``user_id`` blocked, in the user's group."""
        return f"{self._tag(self.group_of(user_id)[0])}:b:{user_id}"

    def user_of_blocks_key(self, key: str) -> str:
        """The user whose blocklist ``key`` is."""
        return key.split(":b:", 1)[1]

    def stream_key(self, group: int) -> str:
        """The group's change feed."""
        return f"{self._tag(group)}:log"

    def seq_key(self, group: int) -> str:
        """The group's change counter."""
        return f"{self._tag(group)}:seq"

    def version_key(self, group: int) -> str:
        """The group's last version."""
        return f"{self._tag(group)}:ver"

    def group_keys(self, group: int) -> list[str]:
        """The group's stream, seq and version keys (the IMPORT script's first KEYS)."""
        return [self.stream_key(group), self.seq_key(group), self.version_key(group)]

    def user_keys(self, user_id: str) -> list[str]:
        """KEYS for a write script about ``user_id``: bucket, stream, seq, version, blocks."""
        group, bucket = self.group_of(user_id)
        return [
            self.bucket_key(group, bucket),
            self.stream_key(group),
            self.seq_key(group),
            self.version_key(group),
            self.blocks_key(user_id),
        ]
