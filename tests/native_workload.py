"""Every compiled loop of the index at work on a small registry, for a memory checker to watch.

``python -m tests.native_workload`` builds a base and an overlay whose rows cover each case
the probe tells apart (held, hidden, excluded, overridden, contested, unknown, asked twice),
then asks batches of every size through each way in: ``match``, ``holders``,
``discover_answer``, lookup jobs (in line and on a lookup thread, fingerprinting the hashes
themselves or given fingerprints) and ``bucket_answer``. It prints ``workload done`` at the
end. tests/unit/test_native_memory.py runs it under valgrind's memcheck.
"""

from __future__ import annotations

import os
import random

import numpy as np

from onnet_server.core import _native
from onnet_server.core.index import RegistryIndex
from tests.unit.job_runs import run_job

BASE_USERS = 3_000
OVERLAY_USERS = 2_000
BATCH_SIZES = (0, 1, 2, 7, 64, 500, 1_000)


def populated(rng: random.Random) -> tuple[RegistryIndex, list[bytes], frozenset[str]]:
    """An index with every kind of row, its users' fingerprints, and users to exclude."""
    total = BASE_USERS + OVERLAY_USERS
    fingerprints = [rng.randbytes(16) for _ in range(total + 300)]
    users = [f"user-{i}" for i in range(total)]
    index = RegistryIndex()
    index.load(
        users[:BASE_USERS],
        b"".join(fingerprints[:BASE_USERS]),
        np.arange(1, BASE_USERS + 1, dtype=np.uint64),
        np.array([i % 3 != 1 for i in range(BASE_USERS)]),  # every third hidden
        [rng.randbytes(40) if i % 2 else b"" for i in range(BASE_USERS)],
    )
    version = 10 * total
    for i in range(BASE_USERS, total):  # new users, every third hidden
        version += 1
        index.put(users[i], fingerprints[i], version, i % 3 != 1, rng.randbytes(40))
    for i in range(300):  # base users who moved: their base rows are overridden
        version += 1
        index.put(users[i], fingerprints[total + i], version, True)
    for i in range(300, 400):  # base numbers taken by newer claims: contested
        version += 1
        index.put(f"taker-{i}", fingerprints[i], version, True)
    excluded = frozenset(users[5:BASE_USERS:7]) | frozenset(users[BASE_USERS:total:11])
    return index, fingerprints, excluded


def main() -> None:
    """Run the workload once."""
    rng = random.Random(7)
    index, fingerprints, excluded = populated(rng)
    asked = fingerprints + [rng.randbytes(16) for _ in range(2_000)]  # and unknown numbers
    key = _native.FingerprintKey(os.urandom(32))
    token = b"t" * 40
    for size in BATCH_SIZES:
        for left_out in (frozenset(), excluded):
            batch = b"".join(rng.choice(asked) for _ in range(size))
            index.match(batch, left_out)
            index.holders(batch)
            index.discover_answer(batch, left_out, token, False)
            index.discover_answer(b"".join(dict.fromkeys(asked[:size])), left_out, token, True)
            for on_a_thread in (False, True):
                job = index.lookup_job(batch, left_out)
                run_job(job, on_a_thread=on_a_thread)
                job.answer(index.edits, token)
                hashes = rng.randbytes(32 * size)
                job = index.lookup_job(hashes, left_out, key)
                run_job(job, on_a_thread=on_a_thread)
                job.answer(index.edits, token)
    for bits in (0, 4, 12, 24):
        index.bucket_answer([rng.randrange(1 << bits) for _ in range(40)], bits, excluded)
    print("workload done")


if __name__ == "__main__":
    main()
