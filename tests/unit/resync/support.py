"""What the re-sync token tests share: a fake clock, two peppers, random hashes.

The fixtures built on them (``clock``, ``keyring``, ``tokens``) are in conftest.py.
"""

from __future__ import annotations

import os

NOW = 1_700_000_000
TTL = 86_400
OLD_PEPPER = b"old pepper, 32 bytes long, test!"
NEW_PEPPER = b"new pepper, 32 bytes long, test!"
ACCOUNT = "alice-7f3a"


class Clock:
    """A clock that stands still at ``now`` until a test moves it."""

    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def packed(n: int) -> bytes:
    """``n`` random 32-byte hashes, packed."""
    return os.urandom(32 * n)


def split(data: bytes) -> list[bytes]:
    """Packed hashes, one by one."""
    return [data[i : i + 32] for i in range(0, len(data), 32)]
