"""Discover's probes on a thread of their own (stores/lookup_thread.py) answer as in line.

The thread reads the index while the event loop may change it; a probe's answer is used
only when the index made no change meanwhile. These tests hold the answers to those of the
same lookup made in line at the moment the answer is given, through changes that grow the
overlay's arrays, reuse rows and move its id arena.
"""

from __future__ import annotations

import asyncio
import random
import select
import threading
import time
from collections.abc import AsyncIterator

import pytest

from onnet_server.core import _native
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.stores.lookup_thread import LookupThread
from onnet_server.stores.memory import MemoryRegistry

FINGERPRINTER = Fingerprinter(random.Random(8).randbytes(32))
KEY = FINGERPRINTER.lookup_key
HASHES = [random.Random(7).randbytes(32) for _ in range(600)]
NUMBERS = [FINGERPRINTER.fingerprint(contact_hash) for contact_hash in HASHES]
"""The registered numbers' fingerprints (a Discover sends the hashes)."""


def register(store: MemoryRegistry, count: int, first: int = 0, *, prefix: str = "user") -> None:
    for n in range(first, first + count):
        store.register_now(f"{prefix}-{n}-{'x' * (n % 30)}", NUMBERS[n % len(NUMBERS)], True)


def request(rng: random.Random, size: int = 200) -> bytes:
    """Hashes of some registered numbers and some unknown ones, duplicates too."""
    known = [rng.choice(HASHES) for _ in range(size // 2)]
    return b"".join(known + [rng.randbytes(32) for _ in range(size - len(known))])


async def off_loop(
    store: MemoryRegistry, hashes: bytes, excluded: frozenset[str], token: bytes
) -> tuple[bytes, int]:
    """Discover's lookup of ``hashes``, its job on the store's lookup thread if any."""
    return (await store.look_up_batch(hashes, KEY, excluded)).answer(token)


def in_line(
    store: MemoryRegistry, hashes: bytes, excluded: frozenset[str], token: bytes
) -> tuple[bytes, int]:
    """The same lookup made here and now."""
    return store.discover_answer(FINGERPRINTER.fingerprints(hashes), excluded, token)


@pytest.fixture
async def thread() -> AsyncIterator[LookupThread]:
    started = LookupThread(queue_size=64)
    started.start()
    yield started
    await started.close()


class Counted(LookupThread):
    """A lookup thread that counts the probes it ran."""

    ran = 0

    async def run(self, job: _native.LookupJob) -> bool:
        taken = await super().run(job)
        self.ran += taken
        return taken


async def test_probes_on_the_thread_answer_as_in_line() -> None:
    store = MemoryRegistry()
    register(store, 400)
    counted = Counted()
    counted.start()
    store.lookup_thread = counted
    rng = random.Random(1)
    try:
        for _ in range(50):
            fingerprints = request(rng)
            blockers = frozenset(f"user-{n}-{'x' * (n % 30)}" for n in rng.sample(range(400), 3))
            answer = await off_loop(store, fingerprints, blockers, b"token")
            assert answer == in_line(store, fingerprints, blockers, b"token")
            assert answer[1] > 0
    finally:
        await counted.close()
    assert counted.ran == 50


async def test_a_change_while_the_probe_ran_is_answered(thread: LookupThread) -> None:
    store = MemoryRegistry()
    register(store, 100)
    store.lookup_thread = thread
    asked = HASHES[500]  # nobody holds its number yet
    run = thread.run

    async def run_then_register(job: _native.LookupJob) -> bool:
        taken = await run(job)
        store.register_now("newcomer", NUMBERS[500], True)  # while the answer was on its way
        return taken

    thread.run = run_then_register  # type: ignore[method-assign]
    encoded, found = await off_loop(store, asked, frozenset(), b"")
    assert found == 1
    assert (encoded, found) == in_line(store, asked, frozenset(), b"")


async def test_lookups_racing_changes_answer_as_in_line_when_answered(
    thread: LookupThread,
) -> None:
    store = MemoryRegistry()
    register(store, 50)
    store.lookup_thread = thread
    rng = random.Random(2)
    checked = 0

    async def look(seed: int) -> None:
        nonlocal checked
        mine = random.Random(seed)
        for _ in range(20):
            fingerprints = request(mine, 300)
            answer = await off_loop(store, fingerprints, frozenset(), b"")
            # No await in between: the index is as it was when the answer was given.
            assert answer == in_line(store, fingerprints, frozenset(), b"")
            checked += 1

    async def change() -> None:
        # Registrations (the arrays grow, the arena grows), moves and erasures.
        for round_ in range(200):
            register(store, 20, 50 + 20 * round_, prefix=f"r{round_ % 7}")
            for n in rng.sample(range(50), 5):
                await store.unregister(f"user-{n}-{'x' * (n % 30)}")
            register(store, 5, rng.randrange(50))
            await asyncio.sleep(0)

    await asyncio.gather(change(), *(look(seed) for seed in range(8)))
    assert checked == 160


async def test_a_full_queue_or_a_stopped_thread_answers_in_line() -> None:
    store = MemoryRegistry()
    register(store, 200)
    small = LookupThread(queue_size=1)
    small.start()
    store.lookup_thread = small
    rng = random.Random(3)
    asked = [request(rng) for _ in range(20)]
    answers = await asyncio.gather(*(off_loop(store, f, frozenset(), b"") for f in asked))
    assert answers == [in_line(store, f, frozenset(), b"") for f in asked]
    await small.close()
    after = await off_loop(store, asked[0], frozenset(), b"")
    assert after == in_line(store, asked[0], frozenset(), b"")
    assert not await small.run(store.index.lookup_job(asked[0], frozenset(), KEY))


async def test_closing_lets_queued_probes_finish(thread: LookupThread) -> None:
    store = MemoryRegistry()
    register(store, 300)
    store.lookup_thread = thread
    rng = random.Random(4)
    asked = [request(rng, 1000) for _ in range(30)]
    lookups = [asyncio.ensure_future(off_loop(store, f, frozenset(), b"")) for f in asked]
    await asyncio.sleep(0)  # every lookup queued
    await thread.close()
    answers = await asyncio.gather(*lookups)
    assert answers == [in_line(store, f, frozenset(), b"") for f in asked]


def test_the_worker_takes_no_more_jobs_than_it_has_room_for() -> None:
    """Room counts every job not yet collected: queued, running, or done."""
    store = MemoryRegistry()
    register(store, 100)
    worker = _native.LookupWorker(1)
    serving = threading.Thread(target=worker.serve)
    serving.start()
    try:
        for round_ in range(20):
            # A long probe, so that it is often still running when the second one comes.
            long = request(random.Random(round_), 100_000)
            first = store.index.lookup_job(long, frozenset(), KEY)
            second = store.index.lookup_job(request(random.Random(-round_), 10), frozenset(), KEY)
            assert worker.submit(first)
            deadline = time.monotonic() + 10
            while worker.pending()[0]:  # spin: the probe is taken within microseconds
                assert time.monotonic() < deadline, "the first probe never left the queue"
            assert not worker.submit(second)  # whether the first is running or done
            assert select.select([worker.fileno()], [], [], 10)[0], "the first never finished"
            assert worker.finished() == [first]
            assert worker.pending() == (0, 0, 0)
    finally:
        worker.stop()
        serving.join()


def test_a_job_answers_only_for_the_index_it_was_made_from() -> None:
    store = MemoryRegistry()
    register(store, 10)
    job = store.index.lookup_job(HASHES[0], frozenset(), KEY)
    job.run_here()
    made_at = store.index.edits
    register(store, 1, 20)
    assert job.answer(store.index.edits, b"") is None
    answer = job.answer(made_at, b"")
    assert answer is not None
    assert answer[1] == 1


def test_a_cancelled_job_is_not_probed() -> None:
    """A client that gives up on its calls does not keep the thread busy with them: a job
    cancelled while queued is let go without its probe (the worker starts serving after
    the cancellation, so the job is certainly still queued then)."""
    store = MemoryRegistry()
    register(store, 300)
    rng = random.Random(5)
    ahead = store.index.lookup_job(request(rng, 1000), frozenset(), KEY)
    given_up = store.index.lookup_job(request(rng, 1000), frozenset(), KEY)
    worker = _native.LookupWorker(4)
    assert worker.submit(ahead)
    assert worker.submit(given_up)
    worker.cancel(given_up)
    worker.stop()  # serve returns once the queued jobs are done with
    serving = threading.Thread(target=worker.serve)
    serving.start()
    serving.join()
    assert worker.finished() == [ahead, given_up]
    # Never run: no fingerprints made, nothing found, no answer.
    assert given_up.digest() is None
    assert given_up.answer(store.index.edits, b"") is None
    probed = ahead.answer(store.index.edits, b"")
    assert probed is not None
    assert probed[1] > 0


class CancelsRecorded:
    """A lookup worker that records which jobs it was asked to cancel."""

    def __init__(self, worker: _native.LookupWorker) -> None:
        self.worker = worker
        self.cancelled: list[_native.LookupJob] = []

    def cancel(self, job: _native.LookupJob) -> None:
        self.cancelled.append(job)
        self.worker.cancel(job)

    def __getattr__(self, name: str) -> object:
        return getattr(self.worker, name)


async def test_a_caller_that_gives_up_cancels_its_job(thread: LookupThread) -> None:
    """``LookupThread.run`` cancelled: the worker is told to let the job go."""
    store = MemoryRegistry()
    register(store, 10)
    recording = CancelsRecorded(thread._worker)
    thread._worker = recording  # type: ignore[assignment]
    job = store.index.lookup_job(request(random.Random(6), 100), frozenset(), KEY)
    waiting = asyncio.ensure_future(thread.run(job))
    await asyncio.sleep(0)  # submitted, and waiting for the worker
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert recording.cancelled == [job]
