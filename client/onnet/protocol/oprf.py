"""RFC 9497 oblivious PRF, suite ristretto255-SHA512, modes OPRF and VOPRF.

The protocol layer is onnet's own and small; the group arithmetic is libsodium's (through
pysodium). Two levels, after pyca/cryptography's habit: the public functions draw their own
randomness, and private ``_with`` seams take it as an argument so that the RFC's test
vectors can drive them. Every failure an attacker could provoke (a bad element, a proof
that does not verify, an input that hashes to the identity) is the same opaque OprfError.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from enum import IntEnum

import pysodium

from onnet._errors import ProtocolError

__all__ = [
    "ELEMENT_SIZE",
    "OUTPUT_SIZE",
    "SCALAR_SIZE",
    "SUITE",
    "Mode",
    "OprfError",
    "blind",
    "blind_evaluate",
    "blind_evaluate_checked",
    "check_element",
    "context_string",
    "derive_key_pair",
    "evaluate",
    "finalize",
    "generate_proof",
    "public_key",
    "verify_proof",
]

SUITE = "ristretto255-SHA512"
"""The RFC 9497 ciphersuite identifier."""
ELEMENT_SIZE = 32
"""Bytes of a serialized ristretto255 element."""
SCALAR_SIZE = 32
"""Bytes of a serialized scalar (little-endian, reduced mod the group order)."""
OUTPUT_SIZE = 64
"""Bytes of a PRF output (SHA-512)."""

_IDENTITY = bytes(ELEMENT_SIZE)
_HASH_BLOCK = 128  # SHA-512's input block, for expand_message_xmd's zero padding


class Mode(IntEnum):
    """The RFC's protocol variants that onnet speaks."""

    OPRF = 0x00
    VOPRF = 0x01


class OprfError(ProtocolError):
    """An OPRF step failed: a bad element, a proof that does not verify, or a bad input.

    Deliberately one error with one message, so that a failure tells a prober nothing more.
    """

    def __init__(self) -> None:
        super().__init__("OPRF operation failed")


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def _length_prefixed(*parts: bytes) -> bytes:
    if any(len(part) > 0xFFFF for part in parts):
        raise OprfError
    return b"".join(_i2osp(len(part), 2) + part for part in parts)


_ORDER = 2**252 + 27742317777372353535851937790883648493  # ristretto255's group order


def _check_scalar(scalar: bytes) -> None:
    """Refuse a scalar that is not a canonical encoding (little-endian, below the order)."""
    if len(scalar) != SCALAR_SIZE or int.from_bytes(scalar, "little") >= _ORDER:
        raise OprfError


def _base_mul(scalar: bytes) -> bytes:
    try:
        return bytes(pysodium.crypto_scalarmult_ristretto255_base(scalar))
    except ValueError:
        raise OprfError from None


def context_string(mode: Mode) -> bytes:
    """``"OPRFV1-" || I2OSP(mode, 1) || "-" || identifier`` (RFC 9497 section 3.1)."""
    return b"OPRFV1-" + _i2osp(mode, 1) + b"-" + SUITE.encode()


def _expand_message_xmd(message: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512."""
    blocks = -(-length // 64)
    if blocks > 255 or len(dst) > 255:
        raise OprfError
    dst_prime = dst + _i2osp(len(dst), 1)
    b0 = hashlib.sha512(
        bytes(_HASH_BLOCK) + message + _i2osp(length, 2) + b"\x00" + dst_prime
    ).digest()
    chunks = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for index in range(2, blocks + 1):
        mixed = bytes(a ^ b for a, b in zip(b0, chunks[-1], strict=True))
        chunks.append(hashlib.sha512(mixed + _i2osp(index, 1) + dst_prime).digest())
    return b"".join(chunks)[:length]


def _hash_to_group(message: bytes, mode: Mode) -> bytes:
    uniform = _expand_message_xmd(message, b"HashToGroup-" + context_string(mode), 64)
    return bytes(pysodium.crypto_core_ristretto255_from_hash(uniform))


def _hash_to_scalar(message: bytes, mode: Mode, dst: bytes | None = None) -> bytes:
    dst = dst if dst is not None else b"HashToScalar-" + context_string(mode)
    return bytes(
        pysodium.crypto_core_ristretto255_scalar_reduce(_expand_message_xmd(message, dst, 64))
    )


def _mul(scalar: bytes, element: bytes) -> bytes:
    """Scalar * element; refuses non-canonical encodings, the identity, and a zero result."""
    if len(element) != ELEMENT_SIZE or element == _IDENTITY:
        raise OprfError
    try:
        return bytes(pysodium.crypto_scalarmult_ristretto255(scalar, element))
    except ValueError:
        raise OprfError from None


def _add(a: bytes, b: bytes) -> bytes:
    try:
        return bytes(pysodium.crypto_core_ristretto255_add(a, b))
    except ValueError:
        raise OprfError from None


def check_element(element: bytes) -> None:
    """Raise OprfError unless ``element`` is a canonical, non-identity ristretto255 element."""
    if (
        len(element) != ELEMENT_SIZE
        or element == _IDENTITY
        or not pysodium.crypto_core_ristretto255_is_valid_point(element)
    ):
        raise OprfError


def derive_key_pair(seed: bytes, info: bytes, mode: Mode) -> tuple[bytes, bytes]:
    """(secret key, public key) from a 32-byte seed and public info (RFC 9497 3.2.1)."""
    if len(seed) != 32 or len(info) > 0xFFFF:
        raise OprfError
    derive_input = seed + _length_prefixed(info)
    dst = b"DeriveKeyPair" + context_string(mode)
    for counter in range(256):
        secret = _hash_to_scalar(derive_input + _i2osp(counter, 1), mode, dst)
        if secret != bytes(SCALAR_SIZE):
            return secret, public_key(secret)
    raise OprfError


def public_key(secret: bytes) -> bytes:
    """The public key (skS * G) of a secret key."""
    return _base_mul(secret)


def blind(message: bytes, mode: Mode = Mode.OPRF) -> tuple[bytes, bytes]:
    """(blind, blinded element) for ``message``: the client's first step."""
    return _blind_with(message, bytes(pysodium.crypto_core_ristretto255_scalar_random()), mode)


def _blind_with(message: bytes, blind_scalar: bytes, mode: Mode) -> tuple[bytes, bytes]:
    element = _hash_to_group(message, mode)
    if element == _IDENTITY:
        raise OprfError
    return blind_scalar, _mul(blind_scalar, element)


def blind_evaluate(secret: bytes, blinded_element: bytes) -> bytes:
    """The server's step: secret * blinded element, refusing bad or identity elements."""
    check_element(blinded_element)
    return _mul(secret, blinded_element)


def blind_evaluate_checked(secret: bytes, blinded_element: bytes) -> bytes:
    """``blind_evaluate`` for an element that ``check_element`` has already accepted."""
    return _mul(secret, blinded_element)


def finalize(message: bytes, blind_scalar: bytes, evaluated_element: bytes) -> bytes:
    """The client's last step: unblind and hash into the 64-byte PRF output."""
    check_element(evaluated_element)
    inverse = bytes(pysodium.crypto_core_ristretto255_scalar_invert(blind_scalar))
    unblinded = _mul(inverse, evaluated_element)
    return hashlib.sha512(_length_prefixed(message, unblinded) + b"Finalize").digest()


def evaluate(secret: bytes, message: bytes, mode: Mode = Mode.OPRF) -> bytes:
    """The PRF output for ``message`` computed directly with the secret key (RFC 9497 3.3.1)."""
    element = _hash_to_group(message, mode)
    if element == _IDENTITY:
        raise OprfError
    issued = _mul(secret, element)
    return hashlib.sha512(_length_prefixed(message, issued) + b"Finalize").digest()


def _composites(
    public: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes], mode: Mode,
    secret: bytes | None,
) -> tuple[bytes, bytes]:  # fmt: skip
    """(M, Z) of RFC 9497 2.2.1: one weighted sum of all the pairs being proven."""
    seed_dst = b"Seed-" + context_string(mode)
    seed = hashlib.sha512(_length_prefixed(public, seed_dst)).digest()
    composite_m = composite_z = b""
    for index, (c_i, d_i) in enumerate(zip(blinded, evaluated, strict=True)):
        transcript = _length_prefixed(seed) + _i2osp(index, 2) + _length_prefixed(c_i, d_i)
        weight = _hash_to_scalar(transcript + b"Composite", mode)
        term_m = _mul(weight, c_i)
        composite_m = term_m if not composite_m else _add(composite_m, term_m)
        if secret is None:
            term_z = _mul(weight, d_i)
            composite_z = term_z if not composite_z else _add(composite_z, term_z)
    if secret is not None:  # the server knows k: Z = k * M, one multiplication
        composite_z = _mul(secret, composite_m)
    return composite_m, composite_z


def _challenge(mode: Mode, *elements: bytes) -> bytes:
    """HashToScalar of the length-prefixed (public key, M, Z, t2, t3) and "Challenge"."""
    return _hash_to_scalar(_length_prefixed(*elements) + b"Challenge", mode)


def generate_proof(
    secret: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes], mode: Mode = Mode.VOPRF
) -> bytes:
    """A proof that every evaluated element is secret * its blinded element (VOPRF)."""
    return _generate_proof_with(
        secret, blinded, evaluated, mode, bytes(pysodium.crypto_core_ristretto255_scalar_random())
    )


def _generate_proof_with(
    secret: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes], mode: Mode, r: bytes
) -> bytes:
    public = public_key(secret)
    m, z = _composites(public, blinded, evaluated, mode, secret)
    t2 = _base_mul(r)
    t3 = _mul(r, m)
    c = _challenge(mode, public, m, z, t2, t3)
    s = bytes(pysodium.crypto_core_ristretto255_scalar_sub(
        r, pysodium.crypto_core_ristretto255_scalar_mul(c, secret)
    ))  # fmt: skip
    return c + s


def verify_proof(
    public: bytes,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    proof: bytes,
    mode: Mode = Mode.VOPRF,
) -> None:
    """Raise OprfError unless ``proof`` shows evaluated = k * blinded under ``public``."""
    if len(proof) != 2 * SCALAR_SIZE or not blinded or len(blinded) != len(evaluated):
        raise OprfError
    for element in (public, *blinded, *evaluated):
        check_element(element)
    m, z = _composites(public, blinded, evaluated, mode, None)
    c, s = proof[:SCALAR_SIZE], proof[SCALAR_SIZE:]
    _check_scalar(c)
    _check_scalar(s)  # a non-canonical s would make the proof malleable
    t2 = _add(_base_mul(s), _mul(c, public))
    t3 = _add(_mul(s, m), _mul(c, z))
    if not hmac.compare_digest(_challenge(mode, public, m, z, t2, t3), c):
        raise OprfError
