"""Keyed fingerprints of contact hashes: what the registry stores instead of numbers."""

from __future__ import annotations

from onnet_server.core import _native
from onnet_server.core.block_cipher import BlockCipher

__all__ = ["FINGERPRINT_SIZE", "Fingerprinter"]

FINGERPRINT_SIZE = 16
"""Bytes in one fingerprint (one AES block)."""


class Fingerprinter:
    """AES-256 under the pepper, applied to the first 16 bytes of each contact hash.

    AES is a pseudorandom permutation, so each fingerprint is a keyed PRF value of its hash
    prefix: without the pepper, a leaked registry cannot be matched against the 10^10
    possible numbers. 128 bits of SHA-256 keep distinct numbers distinct (a collision among
    10^10 numbers has probability about 10^-19). One library call covers a whole batch.
    """

    def __init__(self, key: bytes) -> None:
        """``key`` is the 32-byte pepper."""
        self._cipher = BlockCipher(key)
        self.lookup_key = _native.FingerprintKey(key)
        """The same key for a Discover's lookup job, which makes its batch's fingerprints
        where it may touch no Python object (``_native.LookupJob``)."""

    def fingerprints(self, hashes: bytes) -> bytes:
        """Fingerprints of packed 32-byte contact hashes, packed 16 bytes each, in order."""
        return self._cipher.encrypt(_native.first_halves(hashes))

    def fingerprint(self, contact_hash: bytes) -> bytes:
        """The fingerprint of one contact hash."""
        return self.fingerprints(contact_hash)

    def rekey(self, fingerprints: bytes, target: Fingerprinter) -> bytes:
        """The same numbers' fingerprints under ``target``'s pepper (packed, in order).

        AES is a permutation: decrypting gives back the hash prefixes, which ``target``
        encrypts again. A pepper rotation moves fingerprints (blocklists) this way without
        anyone holding the numbers; the prefixes exist only inside this call.
        """
        return target._cipher.encrypt(self._cipher.decrypt(fingerprints))
