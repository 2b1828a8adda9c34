from __future__ import annotations

import pytest

import onnet
from onnet._plan import DiscoveryPlan


def test_duplicates_are_uploaded_once_and_every_spelling_matches() -> None:
    plan = DiscoveryPlan(["(415) 555-0100", "+1 415 555 0100", "030 901820", "911"], "US")
    assert plan.unique_numbers == ("+14155550100",)  # 030 901820 read as a US number is invalid
    assert plan.hashes == onnet.contact_hash("+14155550100")
    result = plan.result({0: "alice"}, charged=1)
    assert [(m.raw, m.user_id) for m in result.matches] == [
        ("(415) 555-0100", "alice"),
        ("+1 415 555 0100", "alice"),
    ]
    assert [r.raw for r in result.rejected] == ["030 901820", "911"]
    assert (result.uploaded, result.charged) == (1, 1)


def test_batches_split_at_the_limit_and_keep_global_indexes() -> None:
    numbers = [f"+1415555{n:04d}" for n in range(100, 107)]
    plan = DiscoveryPlan(numbers, None)
    batches = list(plan.batches(3))
    assert [(first, len(data) // 32) for first, data in batches] == [(0, 3), (3, 3), (6, 1)]
    assert b"".join(data for _, data in batches) == plan.hashes


def test_batch_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(DiscoveryPlan(["+14155550100"], None).batches(0))


def test_empty_address_book_uploads_nothing() -> None:
    plan = DiscoveryPlan([], "US")
    assert list(plan.batches(10)) == []
    assert plan.result({}, charged=0).uploaded == 0
