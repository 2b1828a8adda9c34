from __future__ import annotations

import os
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from onnet_server.core.fingerprint_table import FingerprintTable


def test_lookup_finds_inserted_rows_and_misses_the_rest() -> None:
    table = FingerprintTable()
    present = [os.urandom(16) for _ in range(5000)]
    for row, fingerprint in enumerate(present):
        table.insert(fingerprint, row)
    absent = [os.urandom(16) for _ in range(5000)]
    rows = table.lookup(b"".join(present + absent))
    assert rows[:5000].tolist() == list(range(5000))
    assert (rows[5000:] == -1).all()
    assert len(table) == 5000


def test_equal_high_halves_are_told_apart_by_the_low_half() -> None:
    table = FingerprintTable()
    high = os.urandom(8)
    a, b, c = high + os.urandom(8), high + os.urandom(8), high + os.urandom(8)
    table.insert(a, 1)
    table.insert(b, 2)
    assert table.lookup(a + b + c).tolist() == [1, 2, -1]
    assert table.remove(a) == 1
    assert table.lookup(a + b).tolist() == [-1, 2]


def test_removal_keeps_later_probe_chain_members_reachable() -> None:
    table = FingerprintTable(1024)
    # Same slot (equal low bits of the high half), different keys: one probe chain.
    base = int.from_bytes(os.urandom(8), "little") & ~0x3FF
    chain = [((base | 5) + (k << 40)).to_bytes(8, "little") + os.urandom(8) for k in range(4)]
    for row, fingerprint in enumerate(chain):
        table.insert(fingerprint, row)
    assert table.remove(chain[1]) == 1
    assert table.lookup(b"".join(chain)).tolist() == [0, -1, 2, 3]
    assert table.remove(chain[1]) == -1
    table.insert(chain[1], 7)
    assert table.lookup(b"".join(chain)).tolist() == [0, 7, 2, 3]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300)), max_size=400))
def test_agrees_with_a_dict_under_any_sequence_of_changes(
    operations: list[tuple[bool, int]],
) -> None:
    rng = random.Random(7)
    universe = [rng.randbytes(16) for _ in range(301)]
    table, model = FingerprintTable(), {}
    next_row = 0
    for insert, item in operations:
        fingerprint = universe[item]
        if insert and fingerprint not in model:
            table.insert(fingerprint, next_row)
            model[fingerprint] = next_row
            next_row += 1
        elif not insert:
            assert table.remove(fingerprint) == model.pop(fingerprint, -1)
    rows = table.lookup(b"".join(universe))
    assert rows.tolist() == [model.get(f, -1) for f in universe]
    assert len(table) == len(model)


def test_growth_keeps_everything_and_memory_stays_compact() -> None:
    table = FingerprintTable()
    fingerprints = np.random.default_rng(1).bytes(16 * 100_000)
    for row in range(100_000):
        table.insert(fingerprints[row * 16 : row * 16 + 16], row)
    assert (table.lookup(fingerprints) == np.arange(100_000)).all()
    assert table.nbytes / 100_000 < 64
