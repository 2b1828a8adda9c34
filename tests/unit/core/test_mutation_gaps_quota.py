"""The quota's edges: the account ids it takes, and what a refusal tells a person.

Each test here was seen to fail with a mutant of core/quota.py that the unit layer let live
(README, "Testing").
"""

from __future__ import annotations

import pytest

from onnet_server.core.errors import QuotaExceeded
from onnet_server.core.quota import (
    MAX_ACCOUNT_LENGTH,
    QuotaDecision,
    check_charge,
    refuse_over_quota,
)


@pytest.mark.parametrize("account", ["a", "x" * MAX_ACCOUNT_LENGTH], ids=["1", "64"])
def test_account_ids_of_one_and_of_the_most_characters_are_charged(account: str) -> None:
    check_charge(account, 1)


def test_a_refusal_tells_a_person_how_long_to_wait() -> None:
    with pytest.raises(QuotaExceeded) as refused:
        refuse_over_quota(QuotaDecision(False, 3, 600.0), "hashes", 10)
    assert refused.value.field == "hashes"
    assert refused.value.reason == (
        "quota of new numbers exhausted (3 left, 10 asked); retry in 10 min"
    )
    assert refused.value.retry_after == 600.0
