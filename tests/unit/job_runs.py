"""Running a lookup job as the server would: on the lookup thread, or in line."""

from __future__ import annotations

import threading

from onnet_server.core import _native


def run_job(job: _native.LookupJob, *, on_a_thread: bool) -> None:
    """Run ``job`` on a worker's own thread (its own AES and MAC contexts, no GIL), or here."""
    if not on_a_thread:
        job.run_here()
        return
    worker = _native.LookupWorker(1)
    serving = threading.Thread(target=worker.serve)
    serving.start()
    assert worker.submit(job)
    worker.stop()  # after the queued job
    serving.join()
