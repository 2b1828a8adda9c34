"""RFC 9497 known-answer tests (ristretto255-SHA512, modes OPRF and VOPRF), and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from onnet.protocol import oprf
from tests.vectors import load

SUITES: list[dict[str, Any]] = load("rfc9497_ristretto255.json")["suites"]
CASES = [
    pytest.param(suite, vector, id=f"mode{suite['mode']}-batch{vector['Batch']}-{i}")
    for suite in SUITES
    for i, vector in enumerate(suite["vectors"])
]


def split(field: str) -> list[bytes]:
    return [bytes.fromhex(part) for part in field.split(",")]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: f"mode{s['mode']}")
def test_key_derivation(suite: dict[str, Any]) -> None:
    mode = oprf.Mode(suite["mode"])
    assert bytes.fromhex(suite["groupDST"]) == b"HashToGroup-" + oprf.context_string(mode)
    secret, public = oprf.derive_key_pair(
        bytes.fromhex(suite["seed"]), bytes.fromhex(suite["keyInfo"]), mode
    )
    assert secret.hex() == suite["skSm"]
    if "pkSm" in suite:
        assert public.hex() == suite["pkSm"]


@pytest.mark.parametrize(("suite", "vector"), CASES)
def test_protocol_vectors(suite: dict[str, Any], vector: dict[str, Any]) -> None:
    mode = oprf.Mode(suite["mode"])
    secret = bytes.fromhex(suite["skSm"])
    inputs, blinds = split(vector["Input"]), split(vector["Blind"])
    blinded = [oprf._blind_with(m, b, mode)[1] for m, b in zip(inputs, blinds, strict=True)]
    assert blinded == split(vector["BlindedElement"])
    evaluated = [oprf.blind_evaluate(secret, element) for element in blinded]
    assert evaluated == split(vector["EvaluationElement"])
    outputs = [oprf.finalize(m, b, e) for m, b, e in zip(inputs, blinds, evaluated, strict=True)]
    assert outputs == split(vector["Output"])
    assert [oprf.evaluate(secret, m, mode) for m in inputs] == outputs
    if mode == oprf.Mode.VOPRF:
        proof = oprf._generate_proof_with(
            secret, blinded, evaluated, mode, bytes.fromhex(vector["Proof"]["r"])
        )
        assert proof.hex() == vector["Proof"]["proof"]
        public = bytes.fromhex(suite["pkSm"])
        oprf.verify_proof(public, blinded, evaluated, proof)
        with pytest.raises(oprf.OprfError):
            oprf.verify_proof(public, blinded, evaluated, proof[:-1] + bytes([proof[-1] ^ 1]))
        with pytest.raises(oprf.OprfError):  # an element that is not k * blinded
            oprf.verify_proof(public, blinded, [public, *evaluated[1:]], proof)


def test_random_blinds_give_the_same_output() -> None:
    secret, _ = oprf.derive_key_pair(bytes(32), b"onnet test", oprf.Mode.OPRF)
    message = b"+14155550100"
    outputs = set()
    for _ in range(3):
        blind, blinded = oprf.blind(message)
        outputs.add(oprf.finalize(message, blind, oprf.blind_evaluate(secret, blinded)))
    assert outputs == {oprf.evaluate(secret, message)}


@pytest.mark.parametrize(
    "element",
    [
        bytes(32),  # the identity
        b"\xff" * 32,  # not a canonical encoding
        bytes.fromhex("00" * 31 + "80"),  # a high bit set: non-canonical
        b"\x01" * 31,  # too short
        b"\x01" * 33,  # too long
    ],
)
def test_bad_elements_are_refused_with_one_opaque_error(element: bytes) -> None:
    secret, _ = oprf.derive_key_pair(bytes(32), b"onnet test", oprf.Mode.OPRF)
    with pytest.raises(oprf.OprfError, match=r"^OPRF operation failed$"):
        oprf.blind_evaluate(secret, element)


def test_proofs_with_non_canonical_scalars_are_refused() -> None:
    suite = next(s for s in SUITES if s["mode"] == 1)
    vector = suite["vectors"][0]
    secret, public = bytes.fromhex(suite["skSm"]), bytes.fromhex(suite["pkSm"])
    blinded = split(vector["BlindedElement"])
    evaluated = [oprf.blind_evaluate(secret, element) for element in blinded]
    proof = bytes.fromhex(vector["Proof"]["proof"])
    c, s = proof[:32], int.from_bytes(proof[32:], "little")
    order = 2**252 + 27742317777372353535851937790883648493
    for bad_s in (s + order, s | 1 << 255, 0):
        bad = c + bad_s.to_bytes(32, "little")
        with pytest.raises(oprf.OprfError):
            oprf.verify_proof(public, blinded, evaluated, bad)


def test_inputs_too_long_for_the_transcript_are_refused() -> None:
    blind_scalar, blinded = oprf.blind(b"+14155550100")
    with pytest.raises(oprf.OprfError):
        oprf.finalize(b"x" * 70_000, blind_scalar, blinded)
