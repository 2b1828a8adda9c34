"""Retries of UNAVAILABLE: the policy, and the tries of one call as a flow (no I/O here).

The flow yields each ``Attempt``; a driver (``onnet._calls``) sleeps its backoff, makes the
call, and sends back the response or throws in the ``grpc.RpcError``. The flow returns the
response, or raises the SDK's own error for the last failure (``onnet._errors``).
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

import grpc

from onnet._errors import from_rpc_error

__all__ = ["NO_RETRY", "Attempt", "RetryPolicy", "attempts"]

_Response = TypeVar("_Response")


@dataclass(frozen=True)
class RetryPolicy:
    """How calls that failed with UNAVAILABLE are retried: exponential backoff, full jitter."""

    attempts: int = 4
    """Tries in all, the first included; 1 disables retries."""
    initial_backoff: float = 0.1
    """Seconds before the first retry, at most (the wait is drawn uniformly below it)."""
    max_backoff: float = 2.0
    """The ceiling of any one wait, in seconds."""
    multiplier: float = 2.0
    """Growth of the ceiling from one retry to the next."""

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), with full jitter."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        # Jitter spreads clients that lost the same server so they do not return in lockstep.
        return random.uniform(0, ceiling)  # noqa: S311 - not a secret


NO_RETRY = RetryPolicy(attempts=1)
"""For calls whose retry could mislead: a Register or Unregister whose reply was lost cannot be
told apart from one that never arrived (a retried Unregister would say NOT_FOUND)."""


@dataclass(frozen=True)
class Attempt:
    """One try of a call: sleep ``backoff`` seconds, if any, then call."""

    backoff: float | None
    """None for the first try, which goes at once."""

    @property
    def wait_for_ready(self) -> bool:
        """Whether the call waits for the channel to be ready (bounded by its deadline)."""
        # A retry does: gRPC backs off reconnecting for about a second after a failure, and
        # a plain retry inside that window fails at once.
        return self.backoff is not None


def attempts(policy: RetryPolicy) -> Generator[Attempt, _Response, _Response]:
    """The tries of one call under ``policy``: the response, or the SDK's error."""
    unavailable: grpc.RpcError | None = None
    backoff: float | None = None
    for attempt in range(policy.attempts):
        try:
            response = yield Attempt(backoff)
        except grpc.RpcError as error:
            if not _should_retry(error, policy, attempt):
                raise from_rpc_error(_final_error(error, unavailable)) from error
            unavailable = error
            backoff = policy.backoff(attempt)
        else:
            return response
    raise AssertionError("unreachable: the last attempt raises")


def _code(error: grpc.RpcError) -> grpc.StatusCode | None:
    # grpc.aio's AioRpcError is not a grpc.Call, but has the same code() method.
    code: grpc.StatusCode | None = getattr(error, "code", lambda: None)()
    return code


def _should_retry(error: grpc.RpcError, policy: RetryPolicy, attempt: int) -> bool:
    return _code(error) == grpc.StatusCode.UNAVAILABLE and attempt + 1 < policy.attempts


def _final_error(error: grpc.RpcError, previous: grpc.RpcError | None) -> grpc.RpcError:
    """The error to report for the last attempt.

    A retry that waited out its deadline for a server that was unavailable reports that
    server as unavailable, not the deadline.
    """
    if previous is not None and _code(error) == grpc.StatusCode.DEADLINE_EXCEEDED:
        return previous
    return error
