"""The server's CPU time, read before and after a phase: from /proc, or from its metrics.

``--server-pid`` reads ``/proc/PID/stat`` (a server on this machine; one pid per worker
process), ``--server-metrics`` reads ``process_cpu_seconds_total`` from a server's
Prometheus endpoint (``onnet serve --metrics-listen``; one URL per worker). Both count user
and system time of every thread, in clock ticks (usually 10 ms), so a phase should run for a
few seconds for the figure to mean much.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["CpuReadError", "CpuSource", "MetricsCpu", "ProcessCpu", "ServerCpu", "parse_stat"]

_METRIC = "process_cpu_seconds_total"


class CpuReadError(Exception):
    """A source could not be read; the message says which and why."""


class CpuSource(Protocol):
    """Somewhere to read a server process's CPU time from."""

    def describe(self) -> str:
        """What is read, for messages and the report."""
        ...

    def seconds(self) -> float:
        """CPU seconds (user and system) the process has used since it started."""
        ...


def parse_stat(text: str, ticks_per_second: int) -> float:
    """CPU seconds from the text of ``/proc/PID/stat``: utime plus stime."""
    # The command name (field 2) is in parentheses and may hold spaces or parentheses
    # itself: the fields after it are counted from the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state is field 3, utime field 14, stime field 15 (proc(5)).
    utime, stime = int(fields[14 - 3]), int(fields[15 - 3])
    return (utime + stime) / ticks_per_second


class ProcessCpu:
    """A process on this machine, by pid, from /proc (Linux); or one of its threads."""

    def __init__(self, pid: int, thread: int | None = None) -> None:
        """Read process ``pid``, or only its thread ``thread`` (its main thread: ``pid``)."""
        self.pid = pid
        self.thread = thread
        task = "" if thread is None else f"/task/{thread}"
        self._path = Path(f"/proc/{pid}{task}/stat")
        self._ticks = os.sysconf("SC_CLK_TCK")

    def describe(self) -> str:
        """``pid N`` (or ``pid N thread T``)."""
        return f"pid {self.pid}" + ("" if self.thread is None else f" thread {self.thread}")

    def seconds(self) -> float:
        """CPU seconds the process (or the thread) has used."""
        try:
            return parse_stat(self._path.read_text(encoding="ascii"), self._ticks)
        except (OSError, ValueError, IndexError) as exc:
            raise CpuReadError(f"cannot read the CPU time of {self.describe()}: {exc}") from None


class MetricsCpu:
    """A server's Prometheus endpoint: its ``process_cpu_seconds_total``."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        """Scrape ``url`` (``http://HOST:PORT/metrics``)."""
        if not url.startswith(("http://", "https://")):
            raise CpuReadError(f"not an http:// or https:// URL: {url}")
        self.url = url
        self._timeout = timeout

    def describe(self) -> str:
        """The URL."""
        return self.url

    def seconds(self) -> float:
        """The last scraped ``process_cpu_seconds_total``."""
        try:
            # The scheme was checked in __init__: http or https, never file:.
            with urllib.request.urlopen(self.url, timeout=self._timeout) as answer:  # noqa: S310
                text = answer.read().decode("utf-8", "replace")
        except (OSError, urllib.error.URLError) as exc:
            raise CpuReadError(f"cannot read {self.url}: {exc}") from None
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == _METRIC:
                try:
                    return float(value.split()[0])
                except (ValueError, IndexError):
                    break
        raise CpuReadError(f"{self.url} has no {_METRIC}")


class ServerCpu:
    """The sum over a server's processes; nothing to read when no source was given."""

    def __init__(self, sources: Sequence[CpuSource]) -> None:
        """Add up ``sources``."""
        self.sources = list(sources)

    def __bool__(self) -> bool:
        return bool(self.sources)

    def describe(self) -> str:
        """Every source, comma-separated."""
        return ", ".join(source.describe() for source in self.sources)

    def seconds(self) -> float | None:
        """CPU seconds of every source together; None when there is none.

        Raises CpuReadError when a source cannot be read.
        """
        if not self.sources:
            return None
        return sum(source.seconds() for source in self.sources)
