"""``onnet serve --workers N``: N server processes sharing one port with SO_REUSEPORT.

The kernel spreads new connections over the workers; each keeps its own index, loaded from
Redis and kept current by the change streams, so any worker answers any call. The parent
only starts them, forwards SIGTERM and SIGINT, and stops them all if one dies.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from onnet_server.config import ServerConfig

__all__ = ["run_workers"]

_log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def _metrics_of(listen: str | None, index: int) -> str | None:
    """Worker ``index``'s metrics address: the configured port plus ``index``."""
    if listen is None:
        return None
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + index}"


def run_workers(config: ServerConfig) -> int:
    """Run ``config.workers`` workers until a signal (0) or until one of them dies (1)."""
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop_all(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for index in range(config.workers):
        if stopping:  # a signal while starting: start no more
            break
        worker = dataclasses.replace(
            config,
            workers=1,
            reuse_port=True,
            metrics_listen=_metrics_of(config.metrics_listen, index),
        )
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "onnet_server", "serve"],
                env={**_inherited_environment(), **worker.to_env()},
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - the parent has no threads here
            )
        )
        _log.info("worker %d started (pid %d)", index, children[-1].pid)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    asked_to_stop = stopping
    if not asked_to_stop:
        _log.error("a worker exited; stopping the others")
    stop_all(signal.SIGTERM, None)  # again: a worker started after the signal gets it too
    codes = [_wait(child, config.shutdown_grace + 5) for child in children]
    _log.info("workers stopped (exit codes %s)", codes)
    return 0 if asked_to_stop and not any(codes) else 1


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
