from __future__ import annotations

from typing import Any

import pytest

import onnet
from tests.vectors import load

CASES: list[dict[str, Any]] = load("e164_cases.json")["cases"]
VALID = [c for c in CASES if c["e164"] is not None]
INVALID = [c for c in CASES if c["e164"] is None]


def test_the_vectors_cover_enough_spellings_and_countries() -> None:
    assert len(VALID) >= 40
    countries = {c["e164"][:3] for c in VALID}  # a coarse country key: + and two digits
    assert len(countries) >= 8


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["note"])
def test_spellings_normalize_to_e164(case: dict[str, Any]) -> None:
    assert onnet.normalize(case["raw"], case["region"]) == case["e164"]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["note"])
def test_invalid_numbers_are_rejected_with_their_reason(case: dict[str, Any]) -> None:
    with pytest.raises(onnet.InvalidNumberError) as caught:
        onnet.normalize(case["raw"], case["region"])
    assert caught.value.reason == case["reason"]
    # The reason is safe to log: it never repeats the digits it was given.
    digits = "".join(ch for ch in case["raw"] if ch.isdigit())
    assert not digits or digits not in caught.value.reason


def test_region_is_case_insensitive() -> None:
    assert onnet.normalize("(415) 555-0100", "us") == "+14155550100"


def test_unknown_region_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown region code"):
        onnet.normalize("415 555 0100", "XX")


def test_input_longer_than_the_limit_is_rejected() -> None:
    with pytest.raises(onnet.InvalidNumberError, match="longer than 250"):
        onnet.normalize("1" * 251, "US")


def test_the_error_is_part_of_the_sdk_tree() -> None:
    assert issubclass(onnet.InvalidNumberError, onnet.OnnetError)
    assert issubclass(onnet.InvalidNumberError, ValueError)


def test_validity_alone_decides() -> None:
    """A number phonenumbers calls valid is accepted even if its length check is unusual."""
    import phonenumbers

    number = phonenumbers.parse("+13101234")
    assert phonenumbers.is_valid_number(number)
    assert onnet.normalize("+1 310-1234") == "+13101234"
