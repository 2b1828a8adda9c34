"""Real onnet servers for tests: in a background thread, or as an `onnet serve` process."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from onnet_server.config import ServeSettings
from onnet_server.core.ports import RegistryStore
from onnet_server.server import start_server
from tests.security import security

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

REPO = Path(__file__).resolve().parent.parent


def parent_of(pid: int) -> int:
    """The parent pid of a live process (Linux: the fourth field of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    return int(stat.rsplit(")", 1)[1].split()[1])


def free_port() -> int:
    """A loopback port that nothing listens on (free at the moment of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


SUITE_ACCOUNT_CALLS = 1_000_000
"""The suite's servers allow this many calls per account: its clients make many calls from
one account, and the per-account call rate has tests of its own (tests/hostile)."""
SUITE_LIMITS_ENV = {"ONNET_ACCOUNT_CALLS": str(SUITE_ACCOUNT_CALLS)}


def fresh_config(**overrides: object) -> ServeSettings:
    """A config on a free loopback port with a fresh random pepper, TLS and credentials."""
    values: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "pepper_hex": secrets.token_hex(32),
        "account_calls": SUITE_ACCOUNT_CALLS,
        "shutdown_grace": 2.0,
        **security().server_settings(),
    }
    values.update(overrides)
    return ServeSettings(**values)  # type: ignore[arg-type]


@dataclass
class ThreadedServer:
    """A grpc.aio server on its own event loop (``asyncio.run``) in a daemon thread."""

    config: ServeSettings
    store: RegistryStore | None = None
    """The store to serve; None opens the one the config names (memory by default)."""
    tracer_provider: TracerProvider | None = None
    """Traces every call with this provider; None makes no span."""
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _stop_requested: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def run() -> None:
            try:
                running = await start_server(
                    self.config, store=self.store, tracer_provider=self.tracer_provider
                )
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            self.port = running.port
            self.store = running.store
            self._loop = asyncio.get_running_loop()
            self._stop_requested = asyncio.Event()
            ready.set()
            await self._stop_requested.wait()
            await running.stop()

        self._thread = threading.Thread(
            target=asyncio.run, args=(run(),), name="onnet-test-server", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("test server did not start")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._stop_requested is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join(timeout=15)
        if self._thread.is_alive():
            raise TimeoutError("test server did not stop")


@dataclass
class ServerProcess:
    """`onnet serve` as a child process; its standard error is kept for inspection."""

    process: subprocess.Popen[str]
    log_lines: list[str]
    _serving: threading.Event
    _port: list[int]
    _reader: threading.Thread

    @property
    def port(self) -> int:
        return self._port[0]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_until_serving(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self._serving.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("onnet serve did not start:\n" + self.log())

    def log(self) -> str:
        return "".join(self.log_lines)

    def terminate(self, timeout: float = 15) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code


@contextmanager
def server_process(
    env: dict[str, str] | None = None, *args: str, wait: bool = True, secure: bool = True
) -> Iterator[ServerProcess]:
    """Run `onnet serve --listen 127.0.0.1:0`, wait until it serves, stop it by pid after.

    It serves TLS and checks credentials with this run's material, with a fresh pepper
    unless ``env`` names one, all unless ``secure`` is False (then pass ``--dev`` or
    settings of your own).
    """
    material = security().server_env() if secure else {}
    if secure and not {"ONNET_PEPPER_FILE", "ONNET_PEPPER"} & set(env or {}):
        material["ONNET_PEPPER"] = secrets.token_hex(32)
    full_env = {**os.environ, **SUITE_LIMITS_ENV, **material, **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "onnet_server", "serve", "--listen", "127.0.0.1:0", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=full_env,
        cwd=REPO,
    )
    lines: list[str] = []
    port_found = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"onnet serving on [^ ]+:(\d+)", line)
            if match:
                port.append(int(match.group(1)))
                port_found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    handle = ServerProcess(process, lines, port_found, port, reader)
    try:
        if wait:
            handle.wait_until_serving()
        yield handle
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@contextmanager
def server_starting_late(port: int, delay: float) -> Iterator[ThreadedServer]:
    """A server that starts on ``port`` after ``delay`` seconds; stopped on exit."""
    late = ThreadedServer(fresh_config(listen=f"127.0.0.1:{port}"))
    starter = threading.Timer(delay, late.start)
    starter.start()
    try:
        yield late
    finally:
        starter.join()
        late.stop()
