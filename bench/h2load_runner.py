"""h2load (nghttp2's HTTP/2 load generator, written in C): installing it, running it, reading it.

h2load knows nothing of gRPC: it POSTs a file as every request's body and counts HTTP
statuses. A gRPC call that fails still answers HTTP 200 (its status is in the trailers), so
a caller must check success some other way (bench_h2load.py reads the server's metrics).

Installed on demand with Debian's package (``nghttp2-client``) when this runs as root with
apt; nothing is downloaded from anywhere else.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "INSTALL_HINT",
    "H2loadError",
    "H2loadMissing",
    "H2loadResult",
    "ensure_h2load",
    "h2load_command",
    "h2load_version",
    "parse_log",
    "parse_output",
    "run_h2load",
]

INSTALL_HINT = "apt-get install -y nghttp2-client (Debian/Ubuntu, as root)"
_PACKAGE = "nghttp2-client"
_APT_SECONDS = 90.0  # for all of apt's steps: the suite's per-test timeout is 120 s


class H2loadMissing(Exception):
    """h2load is not installed and could not be; the message says what to run."""


class H2loadError(Exception):
    """h2load failed, or printed something this module cannot read."""


def ensure_h2load() -> str:
    """The path of h2load, installing Debian's nghttp2-client first if needed and allowed.

    Allowed means: running as root with apt-get on the PATH (as scripts/ensure-system-deps.sh
    installs libsodium). Raises H2loadMissing otherwise, or when the installation fails.
    """
    found = shutil.which("h2load")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise H2loadMissing(f"h2load is not installed; install it with: {INSTALL_HINT}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-qq", _PACKAGE]
    deadline = time.monotonic() + _APT_SECONDS
    failure = ""
    # The package lists are usually fresh enough: update them only when that fails.
    for steps in ([install], [[apt, "update", "-qq"], install]):
        try:
            for step in steps:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(step, _APT_SECONDS)
                subprocess.run(step, env=env, check=True, capture_output=True, timeout=left)
        except (OSError, subprocess.SubprocessError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            failure = f"{exc}: {stderr.decode('utf-8', 'replace').strip()[-300:]}"
            continue
        found = shutil.which("h2load")
        if found:
            return found
    raise H2loadMissing(
        f"h2load is not installed and `apt-get install {_PACKAGE}` failed ({failure}); "
        f"install it with: {INSTALL_HINT}"
    )


def h2load_version(h2load: str) -> str:
    """What ``h2load --version`` says, e.g. ``h2load nghttp2/1.52.0``."""
    done = subprocess.run(
        [h2load, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.strip() or done.stderr.strip()


@dataclass(frozen=True)
class H2loadResult:
    """What one h2load run did, from its output and its per-request log."""

    seconds: float
    """Wall time of the run (h2load's "finished in")."""
    requests_per_second: float
    """Successful requests per second, as h2load computes it (succeeded / seconds)."""
    total: int
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    latencies: list[float]
    """Every request's time from sent to answered, in seconds, sorted (the --log-file)."""

    @property
    def median(self) -> float:
        """The median request time, in seconds."""
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def p99(self) -> float:
        """The 99th-percentile request time, in seconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        rank = max(0, -(-99 * len(self.latencies) // 100) - 1)
        return self.latencies[rank]

    @property
    def all_succeeded(self) -> bool:
        """Every request asked for was answered with HTTP 2xx."""
        return self.total == self.done == self.succeeded == self.status_2xx


_FINISHED = re.compile(r"^finished in ([0-9.]+)(us|ms|s), ([0-9.]+) req/s", re.MULTILINE)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.MULTILINE,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx", re.MULTILINE)
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_output(text: str, latencies: list[float]) -> H2loadResult:
    """Read h2load's summary (standard output); ``latencies`` come from its log file."""
    finished, requests, status = (
        _FINISHED.search(text),
        _REQUESTS.search(text),
        _STATUS.search(text),
    )
    if finished is None or requests is None or status is None:
        raise H2loadError(f"cannot read h2load's output:\n{text[-2000:]}")
    total, _started, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    return H2loadResult(
        seconds=float(finished.group(1)) * _UNIT[finished.group(2)],
        requests_per_second=float(finished.group(3)),
        total=total,
        done=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status_2xx=int(status.group(1)),
        latencies=latencies,
    )


def parse_log(text: str) -> list[float]:
    """Request times in seconds, sorted, from h2load's ``--log-file``.

    Each line: start time (microseconds since the epoch), HTTP status, elapsed microseconds,
    tab-separated.
    """
    times = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3:
            times.append(int(fields[2]) / 1e6)
    return sorted(times)


def run_h2load(
    h2load: str,
    url: str,
    body: Path,
    *,
    requests: int,
    clients: int,
    streams: int,
    log_file: Path,
    timeout: float,
) -> H2loadResult:
    """POST ``body`` to ``url`` ``requests`` times over HTTP/2 in plaintext (h2c, prior
    knowledge), on ``clients`` connections with ``streams`` requests in flight on each, with
    gRPC's request headers. Raises H2loadError when h2load fails or is not understood.
    """
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError("this benchmark sends traffic to 127.0.0.1 only")
    command = h2load_command(
        h2load, url, body, requests=requests, clients=clients, streams=streams, log_file=log_file
    )
    log_file.unlink(missing_ok=True)  # h2load appends to it
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise H2loadError(f"h2load ran longer than {timeout:.0f} s: {' '.join(command)}") from None
    if done.returncode != 0:
        raise H2loadError(
            f"h2load exited with {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return parse_output(done.stdout, parse_log(log_file.read_text(encoding="ascii")))


def h2load_command(
    h2load: str,
    url: str,
    body: Path,
    *,
    requests: int,
    clients: int,
    streams: int,
    log_file: Path,
) -> list[str]:
    """The command line run_h2load runs."""
    return [
        h2load,
        "-n",
        str(requests),
        "-c",
        str(clients),
        "-m",
        str(streams),
        "-t",
        "1",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-d",
        str(body),
        f"--log-file={log_file}",
        url,
    ]
