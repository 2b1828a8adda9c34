"""Address-book spellings to E.164, following the contact-hash contract.

Only numbers that ``phonenumbers`` considers valid are accepted: a number whose E.164 form
cannot be known (too short, local-only, unknown country) is rejected with its reason and
never guessed, because a guessed number hashes to somebody else's contact.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from onnet._errors import OnnetError

__all__ = ["InvalidNumberError", "is_supported_region", "normalize"]

# phonenumbers refuses longer input itself; checking first gives our own reason.
_MAX_INPUT_LENGTH = 250

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country calling code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}

_POSSIBILITY_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country calling code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.INVALID_LENGTH: "wrong length for its country",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "incomplete: dialable only locally (area code "
    "missing?)",
    ValidationResult.TOO_LONG: "too long",
}


class InvalidNumberError(OnnetError, ValueError):
    """A raw address-book entry that has no certain E.164 form.

    ``reason`` is a short human-readable phrase (for example ``"too short"``); it never
    repeats the number itself, so it is safe to log.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_supported_region(region: str) -> bool:
    """True when ``region`` is a two-letter region code that phonenumbers knows (e.g. "US")."""
    return region.upper() in phonenumbers.SUPPORTED_REGIONS


def normalize(raw: str, default_region: str | None = None) -> str:
    """Return the E.164 form (e.g. ``"+14155550100"``) of one address-book entry.

    ``raw`` may be written in national or international format, with 00/011 prefixes, as a
    ``tel:`` URI, with punctuation, an extension (dropped), full-width or other Unicode digits,
    or vanity letters. ``default_region`` (ISO 3166 alpha-2, e.g. ``"US"``) says how to read
    numbers written without a country code; it may be None when every number starts with +.

    Raises InvalidNumberError with the reason when the number is not valid, and ValueError
    when ``default_region`` is not a known region code.
    """
    region = None
    if default_region is not None:
        if not is_supported_region(default_region):
            raise ValueError(f"unknown region code {default_region!r}")
        region = default_region.upper()
    text = raw.strip()
    if not text:
        raise InvalidNumberError("empty")
    if len(text) > _MAX_INPUT_LENGTH:
        raise InvalidNumberError(f"longer than {_MAX_INPUT_LENGTH} characters")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        no_plus = "+" not in text and "\uff0b" not in text  # ASCII or full-width plus
        if (
            exc.error_type == NumberParseException.INVALID_COUNTRY_CODE
            and region is None
            and no_plus
        ):
            raise InvalidNumberError(
                "no country code, and no default region to read a national number in"
            ) from None
        raise InvalidNumberError(_PARSE_REASONS.get(exc.error_type, "not a phone number")) from None
    if not phonenumbers.is_valid_number(number):
        # Validity decides; the possibility check only words the reason.
        possibility = phonenumbers.is_possible_number_with_reason(number)
        raise InvalidNumberError(
            _POSSIBILITY_REASONS.get(possibility, "not a valid number in its numbering plan")
        )
    number.extension = None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
