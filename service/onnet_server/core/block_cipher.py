"""AES-256 over every 16-byte block of a batch, each on its own, in one library call."""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

__all__ = ["BLOCK_SIZE", "BlockCipher"]

BLOCK_SIZE = 16
"""Bytes in one AES block."""


class BlockCipher:
    """AES-256 applied to each 16-byte block of a batch on its own (ECB), in one call.

    ECB is the point: every block is a distinct, independent PRP input, and one call
    encrypts a whole batch at memory speed. No block depends on another, so one encryptor
    serves every batch (made once per thread: a context is not shared between threads),
    with no per-call setup; whole blocks only, so nothing is ever held back for a final.
    """

    def __init__(self, key: bytes) -> None:
        """``key`` is 32 bytes."""
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305
        self._local = threading.local()

    def _context(self, kind: str) -> CipherContext:
        context: CipherContext | None = getattr(self._local, kind, None)
        if context is None:
            context = self._cipher.encryptor() if kind == "encrypt" else self._cipher.decryptor()
            setattr(self._local, kind, context)
        return context

    def encrypt(self, blocks: bytes) -> bytes:
        """Each 16-byte block of ``blocks`` encrypted, in order."""
        if len(blocks) % BLOCK_SIZE:
            raise ValueError("whole 16-byte blocks only")
        return self._context("encrypt").update(blocks)

    def decrypt(self, blocks: bytes) -> bytes:
        """Each 16-byte block of ``blocks`` decrypted, in order."""
        if len(blocks) % BLOCK_SIZE:
            raise ValueError("whole 16-byte blocks only")
        return self._context("decrypt").update(blocks)
