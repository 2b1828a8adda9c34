from __future__ import annotations

from typing import Any

import pytest

import onnet
from tests.vectors import load

VECTORS: list[dict[str, Any]] = load("contact_hash_v1.json")["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["e164"])
def test_known_answers(vector: dict[str, Any]) -> None:
    assert onnet.contact_hash(vector["e164"]).hex() == vector["contact_hash"]


def test_size_and_version() -> None:
    assert len(onnet.contact_hash("+14155550100")) == onnet.CONTACT_HASH_SIZE == 32
    assert onnet.CONTACT_HASH_VERSION == 1


@pytest.mark.parametrize(
    "text",
    [
        "14155550100",
        "+1 415 555 0100",
        "+0123456",
        "+1",
        "+1234567890123456",
        "+\uff11\uff14\uff11\uff15\uff15\uff15\uff10\uff11\uff10\uff10",
        "",
    ],
)
def test_only_e164_is_hashed(text: str) -> None:
    with pytest.raises(ValueError, match=r"not an E\.164 number"):
        onnet.contact_hash(text)


def test_normalized_spellings_hash_alike() -> None:
    spellings = ["(415) 555-0100", "+1 415 555 0100", "tel:+1-415-555-0100;ext=9"]
    hashes = {onnet.contact_hash(onnet.normalize(s, "US")) for s in spellings}
    assert len(hashes) == 1
