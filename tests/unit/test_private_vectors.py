"""Private mode's conformance vectors (tests/vectors/private_v1.json), held to the formulas.

Each vector walks one number through a client's private mode, as docs/protocol.md writes it:
E.164 -> blinded element (with a fixed blind) -> the server's evaluation -> the 64-byte OPRF
output T -> its bucket -> the entry key and tag -> the sealed entry of a user id. The test
recomputes every step from the documented formulas with hashlib and cryptography's
ChaCha20-Poly1305 (not onnet's own bucket code), and also with the SDK's functions, and
holds both to the file. `python -m tests.unit.test_private_vectors` writes the file again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from onnet.protocol import buckets, oprf
from tests.vectors import VECTORS, load

_SEED, _INFO = bytes(range(32)), b"onnet conformance vectors"
_CASES = [  # (E.164, user id, bucket_prefix_bits, blind scalar byte, nonce byte)
    ("+14155550100", "alice", 12, 1, 0xA0),
    ("+442079460958", "charles-15chars", 0, 2, 0xA1),  # 15 bytes: still one 16-byte block
    ("+4930901820", "emmy.schmidt.berlin", 31, 3, 0xA2),  # 19 bytes: two blocks
]


def _scalar(byte: int) -> bytes:
    """A fixed, valid blind scalar: a small number, little-endian (as ristretto255 reads it)."""
    return bytes([byte]) + bytes(31)


def _padded(user_id: str) -> bytes:
    raw = user_id.encode("ascii")
    padded = bytes([len(raw)]) + raw
    return padded + bytes(-len(padded) % 16)


def vectors() -> dict[str, Any]:
    """The file's content, computed from the documented formulas."""
    secret, public = oprf.derive_key_pair(_SEED, _INFO, oprf.Mode.OPRF)
    cases = []
    for e164, user_id, bits, blind_byte, nonce_byte in _CASES:
        blind, blinded = oprf._blind_with(e164.encode("ascii"), _scalar(blind_byte), oprf.Mode.OPRF)
        evaluated = oprf.blind_evaluate(secret, blinded)
        output = oprf.finalize(e164.encode("ascii"), blind, evaluated)
        nonce = bytes([nonce_byte]) * 12
        key = hashlib.sha256(b"onnet/bucket-key/v1" + output).digest()
        tag = hashlib.sha256(b"onnet/bucket-tag/v1" + output + nonce).digest()[:8]
        sealed = ChaCha20Poly1305(key).encrypt(nonce, _padded(user_id), tag)
        cases.append({
            "e164": e164,
            "blind": blind.hex(),
            "blinded_element": blinded.hex(),
            "evaluated_element": evaluated.hex(),
            "output": output.hex(),
            "bucket_prefix_bits": bits,
            "bucket": int.from_bytes(output[:4], "big") >> (32 - bits) if bits else 0,
            "entry_key": key.hex(),
            "nonce": nonce.hex(),
            "tag": tag.hex(),
            "user_id": user_id,
            "entry": (tag + nonce + sealed).hex(),
        })  # fmt: skip
    return {
        "source": (
            "tests/unit/test_private_vectors.py: RFC 9497 OPRF (ristretto255-SHA512, mode "
            "OPRF; the suite itself is held to the RFC's vectors in rfc9497_ristretto255.json) "
            "with a fixed key and blinds, then the entry formulas of docs/protocol.md computed "
            "with hashlib and cryptography's ChaCha20-Poly1305"
        ),
        "suite": oprf.SUITE,
        "key_seed": _SEED.hex(),
        "key_info": _INFO.decode(),
        "secret_key": secret.hex(),
        "public_key": public.hex(),
        "vectors": cases,
    }


def test_the_published_vectors_follow_the_formulas() -> None:
    assert load("private_v1.json") == vectors()


def test_the_sdk_agrees_with_each_vector() -> None:
    published = load("private_v1.json")
    secret = bytes.fromhex(published["secret_key"])
    outputs = [bytes.fromhex(case["output"]) for case in published["vectors"]]
    for case, output in zip(published["vectors"], outputs, strict=True):
        entry = bytes.fromhex(case["entry"])
        # The output does not depend on the blind: evaluating directly gives it too.
        assert oprf.evaluate(secret, case["e164"].encode("ascii")) == output
        assert buckets.bucket_of(output, case["bucket_prefix_bits"]) == case["bucket"]
        assert buckets.open_entry(output, entry) == case["user_id"]
        nonce = bytes.fromhex(case["nonce"])
        assert buckets._seal_entry_with(output, case["user_id"], nonce) == entry
        assert [buckets.open_entry(o, entry) for o in outputs if o != output] == [None, None]


if __name__ == "__main__":
    (VECTORS / "private_v1.json").write_text(json.dumps(vectors(), indent=1) + "\n")
