"""Spans inside the call being served: its lookup and its Redis round trips.

The stores call these wherever a call's work is worth a span of its own. They cost a
context-variable read when the server does not trace (no OpenTelemetry is imported here),
and make a span only inside a call that has a server span (``server_spans.py`` sets it up
per call): work outside any call, such as the change feed in the background, makes none.

What a span may carry is the promise of the README's "Traces": names from a fixed set,
counts, sizes and outcomes; never a number, a hash, a fingerprint, a user id, an account or
a Redis key (keys hold fingerprints and user ids).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Protocol, TypeAlias

__all__ = [
    "CallSpans",
    "Span",
    "annotate",
    "begin_call",
    "lookup_span",
    "redis_span",
    "traced",
]

Value: TypeAlias = str | int | float | bool
"""What an attribute may hold here: a name from a fixed set, a count, a size or a flag."""


class Span(Protocol):
    """The part of a span that the stores use."""

    def set_attribute(self, key: str, value: Value) -> None:
        """Set one attribute."""


class CallSpans(Protocol):
    """How spans are made inside one call (implemented by ``server_spans.py``)."""

    def child(
        self, name: str, attributes: Mapping[str, Value], *, client: bool
    ) -> AbstractContextManager[Span]:
        """A child span of the call's span, current while the context is entered.

        ``client`` marks a span of a request to another service (Redis).
        """

    def annotate(self, key: str, value: Value) -> None:
        """Set an attribute of the call's own span."""


class _NoSpan:
    """The span of a call that is not traced: it keeps nothing."""

    def set_attribute(self, key: str, value: Value) -> None:
        """Do nothing."""


_CALL: ContextVar[CallSpans | None] = ContextVar("onnet_call_spans", default=None)
# One context manager for every untraced span: entering it allocates nothing.
_UNTRACED: AbstractContextManager[Span] = contextlib.nullcontext(_NoSpan())


def begin_call(spans: CallSpans) -> None:
    """Trace the call being served (each call runs in a context of its own) with ``spans``."""
    _CALL.set(spans)


def traced() -> bool:
    """Whether the call being served is traced (a hot path skips its span's work if not)."""
    return _CALL.get() is not None


def lookup_span(name: str) -> AbstractContextManager[Span]:
    """A span around a lookup in this process's index (no I/O), named ``name``."""
    call = _CALL.get()
    if call is None:
        return _UNTRACED
    return call.child(name, {}, client=False)


def redis_span(operation: str, *, commands: int = 1) -> AbstractContextManager[Span]:
    """A span around one round trip to Redis: ``operation`` names it, never its keys.

    ``commands`` is how many commands one pipelined round trip sends.
    """
    call = _CALL.get()
    if call is None:
        return _UNTRACED
    attributes: dict[str, Value] = {
        "db.system": "redis",
        "db.system.name": "redis",
        "db.operation.name": operation,
    }
    if commands > 1:
        attributes["db.operation.batch.size"] = commands
    return call.child(f"redis {operation}", attributes, client=True)


def annotate(key: str, value: Value) -> None:
    """Set an attribute of the call's span (a batch size, say), if the call is traced."""
    call = _CALL.get()
    if call is not None:
        call.annotate(key, value)
