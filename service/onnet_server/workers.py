"""``onnet serve --workers N``: N server processes sharing one port with SO_REUSEPORT.

The kernel spreads new connections over the workers. They share one index base: the worker
that holds the host's builder lock builds and publishes each base as a file in the index
directory, and every worker maps it (stores/index_rebuild.py); each follows Redis's change
streams into its own small overlay, so any worker answers any call with every change.

The parent only starts the workers, forwards SIGTERM and SIGINT, and restarts a worker that
dies. It is a lean process: once the command line is read, ``run_workers`` replaces the
process (same pid) with ``python -m onnet_server.workers``, which imports nothing but the
standard library and is told its plan in its environment, so that it holds about 9 MiB
rather than the 48 of a process with gRPC, numpy and the SDK loaded (bench/README.md). While
it restarts a worker, the others keep serving, from the base they map and the streams they
follow, and if the dead one was the builder another takes the lock at its next change.
Restarts wait longer after each quick death (up to ``_MAX_BACKOFF`` seconds), so a worker
killed over and over (by a request that crashes gRPC, say) neither spins nor ends the host's
service. A worker that exits with the configuration-error code (2) is not restarted: the
parent stops them all, since no restart can cure it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from onnet_server.logs import configure_logging

if TYPE_CHECKING:  # the lean supervisor never imports the server's configuration
    from onnet_server.config import ServeSettings

__all__ = ["main", "run_workers"]

_PLAN = "ONNET_SUPERVISOR_PLAN"  # the supervisor's whole plan, as JSON

_log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1
_EXIT_CONFIGURATION = 2  # the onnet command's code for bad usage or configuration
_FIRST_BACKOFF = 0.2
_MAX_BACKOFF = 10.0
_STABLE = 30.0  # seconds of life after which a worker's next death restarts it at once


@dataclass(frozen=True)
class _Plan:
    """What the supervisor needs: how to start each worker, and how long to wait for one."""

    workers: list[dict[str, str]]
    """Each worker's ONNET_* settings."""
    grace: float
    """Seconds a worker may take to stop before it is killed."""
    private_index_dir: str | None
    """A directory the supervisor made for the workers' bases, removed when it exits."""


def _metrics_of(listen: str | None, index: int) -> str | None:
    """Worker ``index``'s metrics address: the configured port plus ``index``."""
    if listen is None:
        return None
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + index}"


def run_workers(config: ServeSettings) -> int:
    """Become the supervisor of ``config.workers`` workers (this call does not return).

    Returns 1 only when the process cannot be replaced.
    """
    private_dir = None
    if config.index_dir is None:
        # The workers must share a directory to share a base; without one configured, a
        # private one in memory (tmpfs) that lives as long as the supervisor.
        shm = Path("/dev/shm")  # noqa: S108 - mkdtemp makes a private (0700), unguessable name
        private_dir = tempfile.mkdtemp(prefix="onnet-index-", dir=shm if shm.is_dir() else None)
        config = dataclasses.replace(config, index_dir=Path(private_dir))
    plan = {
        "workers": [
            dataclasses.replace(
                config,
                workers=1,
                reuse_port=True,
                metrics_listen=_metrics_of(config.metrics_listen, index),
            ).to_env()
            for index in range(config.workers)
        ],
        "grace": config.shutdown_grace + 5,
        "private_index_dir": private_dir,
    }
    env = {**_inherited_environment(), _PLAN: json.dumps(plan)}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, "-m", "onnet_server.workers"], env)  # noqa: S606
    except OSError as error:
        _log.error("cannot start the worker supervisor: %s", error)
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)
    return 1


def main() -> int:
    """The supervisor: run the plan in ONNET_SUPERVISOR_PLAN until a signal (0) or an error."""
    raw = json.loads(os.environ.pop(_PLAN))
    plan = _Plan(raw["workers"], float(raw["grace"]), raw["private_index_dir"])
    first = plan.workers[0] if plan.workers else {}
    configure_logging(first.get("ONNET_LOG_LEVEL", "INFO"), first.get("ONNET_LOG_FORMAT", "text"))
    try:
        return _supervise(plan)
    finally:
        if plan.private_index_dir is not None:
            shutil.rmtree(plan.private_index_dir, ignore_errors=True)


def _supervise(plan: _Plan) -> int:
    children: dict[int, subprocess.Popen[bytes]] = {}
    signalled: set[int] = set()
    stopping = False

    def stop_all(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            # Once each: a second SIGTERM could reach a worker after its own handler is gone
            # (while it exits) and kill it with the default action.
            if child.poll() is None and child.pid not in signalled:
                signalled.add(child.pid)
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for index in range(len(plan.workers)):
        if stopping:  # a signal while starting: start no more
            break
        children[index] = _start(plan, index)
    started = dict.fromkeys(children, time.monotonic())
    backoff = dict.fromkeys(children, 0.0)
    due: dict[int, float] = {}  # worker -> when to start it again
    broken = False
    while not stopping:
        time.sleep(0.1)
        now = time.monotonic()
        for index, child in list(children.items()):
            if stopping or index in due or child.poll() is None:
                continue
            if child.returncode == _EXIT_CONFIGURATION:
                _log.error("worker %d has a configuration error; stopping", index)
                broken = True
                stop_all(signal.SIGTERM, None)
                break
            lived = now - started[index]
            backoff[index] = (
                0.0 if lived > _STABLE else min(_MAX_BACKOFF, backoff[index] * 2 or _FIRST_BACKOFF)
            )
            due[index] = now + backoff[index]
            _log.warning(
                "worker %d (pid %d) exited with %s; restarting it in %.1f s",
                index, child.pid, child.returncode, backoff[index],
            )  # fmt: skip
        for index, when in list(due.items()):
            if not stopping and time.monotonic() >= when:
                del due[index]
                children[index] = _start(plan, index)
                started[index] = time.monotonic()
    asked_to_stop = not broken
    stop_all(signal.SIGTERM, None)  # again: a worker started after the signal gets it too
    # A worker that died and awaited its restart has been counted already: only the
    # workers serving when the stop came say how the stop went.
    serving = [child for index, child in children.items() if index not in due]
    codes = [_wait(child, plan.grace) for child in serving]
    _log.info("workers stopped (exit codes %s)", codes)
    # A worker still starting (a restart) when asked to stop dies of the SIGTERM itself,
    # before its handler exists: it stopped as asked all the same.
    failed = [code for code in codes if code not in (0, -signal.SIGTERM)]
    return 0 if asked_to_stop and not failed else 1


def _start(plan: _Plan, index: int) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, "-m", "onnet_server", "serve"],
        env={**_inherited_environment(), **plan.workers[index]},
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - the parent has no threads here
    )
    _log.info("worker %d started (pid %d)", index, child.pid)
    return child


def _wait(child: subprocess.Popen[bytes], timeout: float) -> int:
    """The worker's exit code; a worker that outlives its grace is killed."""
    try:
        return child.wait(timeout)
    except subprocess.TimeoutExpired:
        _log.error("worker pid %d did not stop in %.0f s; killing it", child.pid, timeout)
        child.kill()
        return child.wait()


def _die_with_parent() -> None:
    """In a new worker, before it runs: ask Linux for SIGTERM when the parent dies.

    A parent killed without a chance to stop its workers would otherwise leave them
    serving, sharing the port with whatever starts there next.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _inherited_environment() -> dict[str, str]:
    """The parent's environment without its ONNET_* settings: the worker gets them whole."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ONNET_")}


if __name__ == "__main__":
    sys.exit(main())
