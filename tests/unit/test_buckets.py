from __future__ import annotations

import os

from onnet.protocol import buckets


def test_an_entry_opens_only_with_its_output() -> None:
    output, other = os.urandom(64), os.urandom(64)
    entry = buckets.seal_entry(output, "alice")
    assert buckets.open_entry(output, entry) == "alice"
    assert buckets.open_entry(other, entry) is None
    tampered = entry[:-1] + bytes([entry[-1] ^ 1])
    assert buckets.open_entry(output, tampered) is None
    assert buckets.open_entry(output, entry[:10]) is None


def test_sealing_twice_gives_different_bytes_and_tags() -> None:
    output = os.urandom(64)
    first, second = buckets.seal_entry(output, "alice"), buckets.seal_entry(output, "bob")
    assert first[:8] != second[:8]  # a new holder of a number does not show by its tag
    assert buckets.open_entry(output, first) == "alice"
    assert buckets.open_entry(output, second) == "bob"


def test_short_ids_look_alike() -> None:
    output = os.urandom(64)
    sizes = {len(buckets.seal_entry(output, user)) for user in ("a", "alice", "x" * 15)}
    assert sizes == {8 + 12 + 16 + 16}
    assert buckets.open_entry(output, buckets.seal_entry(output, "x" * 64)) == "x" * 64


def test_bucket_numbers() -> None:
    output = bytes.fromhex("abcdef01") + bytes(60)
    assert buckets.prefix_of(output) == 0xABCDEF01
    assert buckets.bucket_of(output, 0) == 0
    assert buckets.bucket_of(output, 4) == 0xA
    assert buckets.bucket_of(output, 16) == 0xABCD
    assert buckets.bucket_of(output, 32) == 0xABCDEF01


def test_buckets_hold_a_few_tens_of_entries() -> None:
    from onnet_server.core.bucket_size import prefix_bits_for

    assert prefix_bits_for(0) == 0
    assert prefix_bits_for(31) == 0
    assert prefix_bits_for(32) == 1
    for users in (1_000, 100_000, 1_000_000, 10_000_000):
        per_bucket = users / 2 ** prefix_bits_for(users)
        assert 16 <= per_bucket < 32
    assert prefix_bits_for(10**12) == 24
