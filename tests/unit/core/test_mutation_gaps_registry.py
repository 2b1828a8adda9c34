"""Registration without a row preparer, its default batch limit, and a pepper's rekeying.

Each test here was seen to fail with a mutant of core/registry.py or core/fingerprint.py
(and the block cipher under it) that the unit layer let live (README, "Testing"): the
wiring always passes a preparer, and only the rotation command rekeys.
"""

from __future__ import annotations

import pytest

from onnet import ImportRejection, ImportRow
from onnet_server.core.errors import InvalidArgument
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.registry import RegistryService
from tests.unit.core.wiring import MAX_BATCH, Core, numbers, packed


async def test_an_import_without_a_preparer_prepares_its_rows_on_a_thread(core: Core) -> None:
    service = RegistryService(core.store, core.fingerprinter, core.oprf_key, max_batch=MAX_BATCH)
    alice, bob = numbers(2)
    rows = [ImportRow("alice", alice, True), ImportRow("", bob, True)]
    outcome = await service.import_batch(rows, first_row=7)
    assert outcome.imported == 1
    assert outcome.rejected == [ImportRejection(8, "user_id", "must not be empty")]
    assert core.routing.lookup([alice, bob], b"") == ["alice", ""]
    assert core.store.bucket_entry_count() == 1  # alice's private-mode entry


async def test_the_default_batch_limit_is_the_servers_default(core: Core) -> None:
    service = RegistryService(core.store, core.fingerprinter, core.oprf_key)  # no max_batch
    service.check_batch_size(10_000)
    with pytest.raises(InvalidArgument, match="exceeds the limit of 10000"):
        service.check_batch_size(10_001)


def test_rekeying_gives_the_fingerprints_of_the_new_pepper() -> None:
    old, new = Fingerprinter(b"o" * 32), Fingerprinter(b"n" * 32)
    hashes = packed(*numbers(3))
    assert old.rekey(old.fingerprints(hashes), new) == new.fingerprints(hashes)
