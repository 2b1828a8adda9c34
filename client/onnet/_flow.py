"""Flows, and the two drivers that run them: the SDK's logic is written once, without I/O.

A flow is a generator. It yields what it needs done (a call, one try of a call) and gets
the answer back where it yielded, or the exception the doing raised, which it may handle;
what it returns is its result. ``run`` drives a flow with a blocking ``perform``,
``run_async`` with an awaitable one: the blocking and the asyncio SDK differ only there.
(encode/httpx drives its ``Auth.auth_flow`` generators the same way; the flows here never
yield while a lock is held, so a driver may hold one around a whole flow.)
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Generator
from typing import Generic, TypeVar

__all__ = ["run", "run_async"]

_Request = TypeVar("_Request")
_Answer = TypeVar("_Answer")
_Result = TypeVar("_Result")


class _Steps(Generic[_Request, _Answer, _Result]):
    """A flow being run: its pending request, then its result."""

    def __init__(self, flow: Generator[_Request, _Answer, _Result]) -> None:
        self._flow = flow
        self._resume: Callable[[], _Request] = flow.__next__
        self.request: _Request
        self.result: _Result

    def answered(self, answer: _Answer) -> None:
        """The flow gets ``answer`` where it yielded the request."""
        self._resume = functools.partial(self._flow.send, answer)

    def failed(self, error: Exception) -> None:
        """The flow gets ``error`` raised where it yielded the request."""
        self._resume = functools.partial(self._flow.throw, error)

    def advance(self) -> bool:
        """Resume the flow: True with its next ``request``, False once it has a ``result``.

        What the flow raises goes on out.
        """
        try:
            self.request = self._resume()
        except StopIteration as done:
            self.result = done.value
            return False
        return True


def run(
    flow: Generator[_Request, _Answer, _Result], perform: Callable[[_Request], _Answer]
) -> _Result:
    """Run ``flow`` to its end, doing each of its requests with ``perform``."""
    steps = _Steps(flow)
    while steps.advance():
        try:
            steps.answered(perform(steps.request))
        except Exception as error:  # the flow's to handle; unhandled, it raises it again
            # Only kept here: advance throws it in outside this handler, so exceptions
            # chain as they would in straight-line code.
            steps.failed(error)
    return steps.result


async def run_async(
    flow: Generator[_Request, _Answer, _Result],
    perform: Callable[[_Request], Awaitable[_Answer]],
) -> _Result:
    """Run ``flow`` to its end, doing each of its requests with the awaitable ``perform``."""
    steps = _Steps(flow)
    while steps.advance():
        try:
            steps.answered(await perform(steps.request))
        except Exception as error:  # as in run
            steps.failed(error)
    return steps.result
