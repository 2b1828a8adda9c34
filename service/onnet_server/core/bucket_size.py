"""How many bits name a private-mode bucket, for a registry of a given size.

Buckets hold 16 to 31 entries: tens of registered users per bucket, and about a third of
OpenMined PSI's bytes at 1,000,000 users (bench/README.md); 2^bits buckets for n users.
A bucket never has more than ``MAX_PREFIX_BITS`` bits, which the index relies on: it
keeps no more of an entry's prefix than that needs.
"""

from __future__ import annotations

__all__ = ["ENTRIES_PER_BUCKET", "MAX_PREFIX_BITS", "prefix_bits_for"]

ENTRIES_PER_BUCKET = 16
"""The fewest entries a bucket holds (but in a registry of fewer than 32 users)."""
MAX_PREFIX_BITS = 24
"""The most bits a bucket is named by."""


def prefix_bits_for(users: int) -> int:
    """Bucket prefix length for a registry of ``users``: 16 to 31 entries a bucket."""
    bits = 0
    while bits < MAX_PREFIX_BITS and users >> (bits + 1) >= ENTRIES_PER_BUCKET:
        bits += 1
    return bits
