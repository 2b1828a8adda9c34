"""What a load test does: its shape (loop, concurrency, length, batches) and where it aims."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import grpc

from onnet_server.loadtest.population import MAX_USERS, registered_per_book

__all__ = ["Settings", "Target"]


@dataclass(frozen=True)
class Target:
    """The server under test and how to reach it, as any client would."""

    address: str
    """HOST:PORT."""
    credentials: grpc.ChannelCredentials | None = None
    """TLS, or None for plaintext."""
    token: str | None = field(default=None, repr=False)
    """The account credential every virtual client presents (one account for all); kept out
    of repr, so it never reaches a log line or a traceback."""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata: the bearer credential, if there is one."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


@dataclass(frozen=True)
class Settings:
    """One run's shape. ``check`` says what is wrong with it, if anything."""

    concurrency: int = 8
    """Virtual clients, each with its own address book. Closed loop: calls in flight."""
    rate: float | None = None
    """Open loop: calls per second on a fixed timetable; None: closed loop."""
    max_in_flight: int = 1000
    """Open loop: the most calls in flight before the timetable waits (and says so)."""
    duration: float | None = 10.0
    """Seconds measured, after the warm-up; or None when ``requests`` counts instead."""
    requests: int | None = None
    """Calls measured, after the warm-up; or None when ``duration`` bounds the run."""
    warmup: float = 1.0
    """Seconds of calls before the measurement, left out of every figure."""
    batch: int = 1000
    """Contact hashes per call: each virtual client's address book."""
    match_share: float = 0.0
    """Share of each book that registered population users hold."""
    users: int = 0
    """Registered population users the books draw their matches from."""
    seed: int = 1
    """Picks the books' numbers; the same seed gives the same books."""
    resync: bool = True
    """Every call after a client's first sync carries its re-sync token (costs no quota)."""
    ceiling: bool = False
    """Also measure Bench/Ceiling, the same calls with no work, before Discover."""
    connections: int = 1
    """HTTP/2 connections the virtual clients are spread over."""
    timeout: float = 10.0
    """Deadline of each call, in seconds."""

    @property
    def open_loop(self) -> bool:
        """True when calls follow a timetable rather than each other."""
        return self.rate is not None

    def check(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        problems = [
            (self.concurrency < 1, "--concurrency must be at least 1"),
            (self.rate is not None and not _positive(self.rate), "--rate must be above 0"),
            (self.max_in_flight < 1, "--max-in-flight must be at least 1"),
            ((self.duration is None) == (self.requests is None), "give --duration or --requests"),
            (self.duration is not None and not _positive(self.duration), "--duration above 0"),
            (self.requests is not None and self.requests < 1, "--requests must be at least 1"),
            (not (math.isfinite(self.warmup) and self.warmup >= 0), "--warmup must be 0 or more"),
            (self.batch < 1, "--batch must be at least 1"),
            (not 0 <= self.match_share <= 1, "--match-share must be between 0 and 1"),
            (not 0 <= self.users <= MAX_USERS, f"the population holds at most {MAX_USERS} users"),
            (self.connections < 1, "--connections must be at least 1"),
            (not _positive(self.timeout), "--timeout must be above 0"),
        ]
        for failed, message in problems:
            if failed:
                raise ValueError(message)
        registered = registered_per_book(self.batch, self.match_share)
        if registered > self.users:
            raise ValueError(
                f"--match-share {self.match_share} puts {registered} registered numbers in each "
                f"book, but the population holds {self.users} users: pass --populate N (or "
                "--users N for a registry populated earlier)"
            )


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0
