"""Keyed fingerprints of contact hashes: what the registry stores instead of numbers."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from onnet import CONTACT_HASH_SIZE

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
        # ECB is the point: every block is a distinct, independent PRP input, and one call
        # encrypts a whole batch at memory speed. No block depends on another.
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305

    def fingerprints(self, hashes: bytes) -> bytes:
        """Fingerprints of packed 32-byte contact hashes, packed 16 bytes each, in order."""
        rows = np.frombuffer(hashes, dtype=np.uint8).reshape(-1, CONTACT_HASH_SIZE)
        prefixes = np.ascontiguousarray(rows[:, :FINGERPRINT_SIZE]).tobytes()
        encryptor = self._cipher.encryptor()
        return encryptor.update(prefixes) + encryptor.finalize()

    def fingerprint(self, contact_hash: bytes) -> bytes:
        """The fingerprint of one contact hash."""
        return self.fingerprints(contact_hash)

    def rekey(self, fingerprints: bytes, target: Fingerprinter) -> bytes:
        """The same numbers' fingerprints under ``target``'s pepper (packed, in order).

        AES is a permutation: decrypting gives back the hash prefixes, which ``target``
        encrypts again. A pepper rotation moves fingerprints (blocklists) this way without
        anyone holding the numbers; the prefixes exist only inside this call.
        """
        decryptor = self._cipher.decryptor()
        prefixes = decryptor.update(fingerprints) + decryptor.finalize()
        encryptor = target._cipher.encryptor()
        return encryptor.update(prefixes) + encryptor.finalize()
