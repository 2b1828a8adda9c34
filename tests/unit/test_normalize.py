from __future__ import annotations

import unicodedata
from typing import Any

import phonenumbers
import pytest
from phonenumbers import NumberParseException, ValidationResult

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


# This SDK's wording of each cause the vectors name: its promise, written out here.
REASONS = {
    "empty": "empty",
    "no_default_region": "no country code, and no default region to read a national number in",
    "parse:INVALID_COUNTRY_CODE": "unknown country calling code",
    "parse:NOT_A_NUMBER": "not a phone number",
    "parse:TOO_LONG": "too long",
    "invalid:IS_POSSIBLE_LOCAL_ONLY": "incomplete: dialable only locally (area code missing?)",
    "invalid:TOO_SHORT": "too short",
    "invalid:TOO_LONG": "too long",
    "invalid:IS_POSSIBLE": "not a valid number in its numbering plan",
}


PARSE_ERRORS = {
    getattr(NumberParseException, name): name
    for name in (
        "INVALID_COUNTRY_CODE",
        "NOT_A_NUMBER",
        "TOO_SHORT_AFTER_IDD",
        "TOO_SHORT_NSN",
        "TOO_LONG",
    )
}
POSSIBILITIES = {
    getattr(ValidationResult, name): name
    for name in (
        "IS_POSSIBLE",
        "IS_POSSIBLE_LOCAL_ONLY",
        "INVALID_COUNTRY_CODE",
        "TOO_SHORT",
        "INVALID_LENGTH",
        "TOO_LONG",
    )
}


def cause_per_phonenumbers(raw: str, region: str | None) -> str:
    """A refused entry's cause, in the vectors' terms, from phonenumbers alone (no onnet)."""
    text = raw.strip()
    if not text:
        return "empty"
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        error = PARSE_ERRORS[exc.error_type]
        has_plus = "+" in unicodedata.normalize("NFKC", text)
        if error == "INVALID_COUNTRY_CODE" and region is None and not has_plus:
            return "no_default_region"
        return "parse:" + error
    assert not phonenumbers.is_valid_number(number)
    return "invalid:" + POSSIBILITIES[phonenumbers.is_possible_number_with_reason(number)]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["note"])
def test_each_cause_is_what_phonenumbers_finds(case: dict[str, Any]) -> None:
    assert cause_per_phonenumbers(case["raw"], case["region"]) == case["cause"]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["note"])
def test_invalid_numbers_are_rejected_with_their_reason(case: dict[str, Any]) -> None:
    with pytest.raises(onnet.InvalidNumberError) as caught:
        onnet.normalize(case["raw"], case["region"])
    assert caught.value.reason == REASONS[case["cause"]]
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
