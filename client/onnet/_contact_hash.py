"""The contact hash, version 1: what a client uploads instead of a phone number."""

from __future__ import annotations

import hashlib
import re

__all__ = ["CONTACT_HASH_SIZE", "CONTACT_HASH_VERSION", "contact_hash"]

CONTACT_HASH_VERSION = 1
"""The version of the formula below; servers announce the one they expect in GetConfig."""

CONTACT_HASH_SIZE = 32
"""Bytes in one contact hash (a SHA-256 digest)."""

_DOMAIN = b"onnet/contact/v1:"
# E.164: a plus, a country code that never starts with 0, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def contact_hash(e164: str) -> bytes:
    """Return ``SHA-256(b"onnet/contact/v1:" + e164)``, 32 bytes.

    ``e164`` must already be in E.164 form (``normalize`` produces it); anything else raises
    ValueError, because hashing a non-canonical spelling silently matches nobody.
    """
    if not _E164.fullmatch(e164):
        raise ValueError("not an E.164 number: expected '+' followed by 2 to 15 digits")
    return hashlib.sha256(_DOMAIN + e164.encode("ascii")).digest()
