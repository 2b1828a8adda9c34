"""Discover's probes on a thread of their own, off the event loop's core.

Under load, a 1,000-hash probe of an index larger than the caches cost the event loop far
more than its own microseconds: gRPC's next steps ran slower after it, its reads having
evicted theirs (bench/README.md, issue 12). The loop's core is the server's bottleneck while
the other core has room, so the probe runs there: on a thread that holds no GIL
(``_native.LookupWorker``), which says through a pipe the loop watches when probes are done.
A job also makes its batch's fingerprints, its set digest and, for the commonest calls,
the next re-sync token there (libcrypto's AES and BLAKE2b, called without the GIL), so
that the loop's share of a Discover is the hand-over and the answer.

The loop stays the only writer of the index. A probe reads arrays a change may be writing
(or outgrowing: the job holds the ones it reads, so none is freed under it), so its result
is used only if the index made no change meanwhile; else the lookup runs again on the
loop (``LookedUpBatch.answer``).
"""

from __future__ import annotations

import asyncio
import threading

from onnet_server.core import _native

__all__ = ["LookupThread"]

QUEUE_SIZE = 1024
"""Probes queued or done at once; beyond that a lookup runs on the loop, in line."""


class LookupThread:
    """A thread that runs ``_native.LookupJob`` probes without the GIL, for one event loop."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        """Queue at most ``queue_size`` probes; ``start`` starts the thread."""
        self._worker = _native.LookupWorker(queue_size)
        self._waiting: dict[_native.LookupJob, asyncio.Future[None]] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the thread, its results collected by the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._worker.fileno(), self._collect)
        self._thread = threading.Thread(
            target=self._worker.serve, name="onnet-lookups", daemon=True
        )
        self._thread.start()

    async def run(self, job: _native.LookupJob) -> bool:
        """Run ``job``'s probe on the thread; False if it was not taken (full, or stopped).

        A cancelled caller's job is not probed (unless already running), so that calls a
        client gives up on do not keep the thread busy after their slots were given back;
        it is held until the thread is done with it.
        """
        if self._loop is None:
            return False
        done = self._loop.create_future()
        self._waiting[job] = done
        if not self._worker.submit(job):
            del self._waiting[job]
            return False
        try:
            await done
        except asyncio.CancelledError:
            self._worker.cancel(job)
            raise
        return True

    def _collect(self) -> None:
        for job in self._worker.finished():
            done = self._waiting.pop(job)
            if not done.done():
                done.set_result(None)

    async def close(self) -> None:
        """Let the queued probes finish, then stop the thread."""
        if self._loop is None or self._thread is None:
            return
        self._worker.stop()
        await asyncio.to_thread(self._thread.join)
        self._collect()
        self._loop.remove_reader(self._worker.fileno())
        self._loop = None
