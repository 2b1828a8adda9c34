"""Import rows prepared on every core give exactly what one process gives, in row order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onnet import ImportRow
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.private.keys import OprfKey
from onnet_server.core.row_preparer import RowPreparer, prepare_rows


def rows(count: int) -> list[ImportRow]:
    """Valid rows, with a bad number or id every so often (and hidden users)."""
    made = []
    for i in range(count):
        e164 = f"+1650{200 + i // 10_000:03d}{i % 10_000:04d}"
        if i % 97 == 5:
            e164 = "+1234"  # not a valid number
        user = f"user-{i}" if i % 89 != 7 else ""  # an empty id
        made.append(ImportRow(user, e164, discoverable=i % 3 != 0))
    return made


def test_the_pool_prepares_what_one_process_prepares() -> None:
    pepper = os.urandom(32)
    batch = rows(1_000)
    expected = prepare_rows(Fingerprinter(pepper), OprfKey.from_pepper(pepper), batch, 5_000)
    preparer = RowPreparer(pepper, processes=3)
    try:
        found = asyncio.run(preparer.prepare(batch, 5_000))
    finally:
        preparer.close()
    assert found[1] == expected[1]
    assert [row[:3] for row in found[0]] == [row[:3] for row in expected[0]]
    # Entries carry a fresh nonce each: equal in size and prefix, not in bytes.
    assert [(len(row[3]), row[3][:4]) for row in found[0]] == [
        (len(row[3]), row[3][:4]) for row in expected[0]
    ]
    assert expected[1]  # the batch had bad rows, reported at their place in the import
    assert all(rejection.row >= 5_000 for rejection in expected[1])


def test_close_stops_the_worker_processes() -> None:
    preparer = RowPreparer(os.urandom(32), processes=2)
    asyncio.run(preparer.prepare(rows(600), 0))
    assert preparer._pool is not None
    workers = list(preparer._pool._processes)  # pids of the pool's worker processes
    assert len(workers) == 2
    preparer.close()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "a worker process outlived close()"
        time.sleep(0.05)


@pytest.mark.parametrize("processes", [1, 4])
def test_a_small_batch_is_prepared_in_this_process(processes: int) -> None:
    preparer = RowPreparer(os.urandom(32), processes=processes)
    try:
        prepared, rejected = asyncio.run(preparer.prepare(rows(10), 0))
    finally:
        preparer.close()
    assert len(prepared) + len(rejected) == 10
    assert preparer._pool is None  # no pool for so little


_KILLED_SERVER = """
import asyncio, os, signal, sys
from pathlib import Path
sys.path[:0] = {paths!r}
from tests.unit.test_row_preparer import rows
from onnet_server.core.row_preparer import RowPreparer
preparer = RowPreparer(os.urandom(32), processes=2)
asyncio.run(preparer.prepare(rows(600), 0))
Path(sys.argv[1]).write_text(" ".join(map(str, preparer._pool._processes)))  # worker pids
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no exit handlers: as a killed server
"""


def test_the_workers_end_when_the_server_process_is_killed(tmp_path: Path) -> None:
    pids, errors = tmp_path / "workers", tmp_path / "stderr"
    with errors.open("w") as stderr:  # a file, not a pipe: a leftover worker would hold it
        ended = subprocess.run(
            [sys.executable, "-c", _KILLED_SERVER.format(paths=sys.path), str(pids)],
            stdout=subprocess.DEVNULL, stderr=stderr, timeout=60, check=False,
        )  # fmt: skip
    assert ended.returncode == -signal.SIGKILL, errors.read_text()
    workers = [int(pid) for pid in pids.read_text().split()]
    assert len(workers) == 2
    deadline = time.monotonic() + 10
    while alive := [pid for pid in workers if running(pid)]:
        if time.monotonic() > deadline:
            for pid in alive:  # leave nothing behind, then fail
                os.kill(pid, signal.SIGKILL)
            pytest.fail("a worker process outlived the server process that started it")
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie waits to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rpartition(")")[2].split()[0] != "Z"
