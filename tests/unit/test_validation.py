from __future__ import annotations

import pytest

from onnet_server.core.errors import InvalidArgument
from onnet_server.core.validation import check_e164, check_packed_hashes, check_user_id


@pytest.mark.parametrize(
    ("data", "allow_empty", "message"),
    [
        (b"x" * 33, False, "length 33 is not a multiple of 32"),
        (b"", False, "at least one"),
        (b"x" * 32 * 4, False, "batch of 4 hashes exceeds the limit of 3"),
    ],
)
def test_packed_hashes(data: bytes, allow_empty: bool, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        check_packed_hashes("hashes", data, max_count=3, allow_empty=allow_empty)
    assert caught.value.field == "hashes"


def test_packed_hashes_counts() -> None:
    assert check_packed_hashes("h", b"", max_count=3, allow_empty=True) == 0
    assert check_packed_hashes("h", b"x" * 96, max_count=3, allow_empty=False) == 3


@pytest.mark.parametrize(
    ("user_id", "message"),
    [
        ("", "empty"),
        ("u" * 65, "longer than 64"),
        ("tab\there", "printable"),
        ("émile", "printable"),
    ],
)
def test_bad_user_ids(user_id: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check_user_id(user_id)


def test_good_user_ids() -> None:
    check_user_id("u")
    check_user_id("~" * 64)
    check_user_id("acct:12 34")


@pytest.mark.parametrize(
    ("e164", "message"),
    [
        ("", "empty"),
        ("+1 415 555 0100", "not in E.164 form"),
        ("(415) 555-0100", "no country code"),
        ("+1415555010", "not a valid phone number"),
        ("+447700900123", "not a valid phone number"),
    ],
)
def test_bad_numbers(e164: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        check_e164(e164)
    assert caught.value.field == "e164"
    assert e164 == "" or e164 not in str(caught.value)
