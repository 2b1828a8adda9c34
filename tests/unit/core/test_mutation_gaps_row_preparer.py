"""The import workers start from a fork server, never as forks of the server process.

core/row_preparer.py promises it (the server's gRPC threads and event loop must not be
forked); a fork would prepare the same rows, so this test was the only one to fail with a
mutant that dropped the start method (README, "Testing").
"""

from __future__ import annotations

import asyncio
import os

from onnet import ImportRow
from onnet_server.core.row_preparer import RowPreparer
from tests.servers import parent_of
from tests.unit.core.wiring import numbers


def test_the_workers_are_not_forked_from_the_server_process() -> None:
    preparer = RowPreparer(os.urandom(32), processes=2)
    batch = [ImportRow(f"user-{n}", e164, True) for n, e164 in enumerate(numbers(600))]
    try:
        prepared, _ = asyncio.run(preparer.prepare(batch, 0))
        assert preparer._pool is not None
        workers = list(preparer._pool._processes)  # pids of the pool's worker processes
        parents = {parent_of(pid) for pid in workers}
    finally:
        preparer.close()
    assert len(prepared) == len(batch)
    assert len(workers) == 2
    assert os.getpid() not in parents
