from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import onnet
from onnet_server.core.fingerprint import FINGERPRINT_SIZE, Fingerprinter


def test_batch_equals_one_by_one_and_is_aes_of_the_prefix() -> None:
    key = os.urandom(32)
    hashes = [onnet.contact_hash(f"+1415555{n:04d}") for n in range(100, 150)]
    batch = Fingerprinter(key).fingerprints(b"".join(hashes))
    assert len(batch) == 50 * FINGERPRINT_SIZE
    single = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    for i, contact_hash in enumerate(hashes):
        expected = single.update(contact_hash[:16])
        assert batch[i * 16 : (i + 1) * 16] == expected
        assert Fingerprinter(key).fingerprint(contact_hash) == expected


def test_fingerprints_depend_on_the_pepper_and_are_not_the_hash() -> None:
    contact_hash = onnet.contact_hash("+14155550100")
    first = Fingerprinter(os.urandom(32)).fingerprint(contact_hash)
    second = Fingerprinter(os.urandom(32)).fingerprint(contact_hash)
    assert first != second
    assert first not in contact_hash


def test_empty_batch() -> None:
    assert Fingerprinter(os.urandom(32)).fingerprints(b"") == b""
