"""Finding 3: one account cannot slow another.

An account whose quota was spent flooded BlindEvaluate (10,000 valid elements a call, all
checked on the event loop before the quota refused) and FetchBuckets (free, a scan of every
row); another account's re-sync went from 2.5 ms to 86 ms. Now the flood is refused from
its credential alone once its call rate is spent, the quota is asked before any element is
decoded, and heavy work runs in a bounded pool. The target (4x) is measured in
bench/bench_fairness.py; this test holds a looser bound so a busy machine cannot fail it.
"""

from __future__ import annotations

import pytest

from tests.hostile.conftest import production_env
from tests.hostile.fairness import SETTINGS, measure
from tests.servers import server_process


@pytest.mark.slow
def test_a_flooding_account_does_not_stall_another() -> None:
    with server_process(production_env(**SETTINGS), secure=False) as server:
        result = measure(server, rounds=25, flood_seconds=6.0)
    assert sum(result.flood.values()) > 50  # it did flood
    assert result.flood.get("RESOURCE_EXHAUSTED", 0) > 0.9 * sum(result.flood.values())
    assert result.ratio < 6, result
