"""Method handlers watched until their call ends: what the metrics and the spans wrap.

An interceptor that must know how each call ended (its status code, its duration) wraps the
handler the next one gave it. Building a wrapper costs a few objects, so each method's is
built once: the gate's handlers are stable (one per method), but its refusals are new at
every call, so a handler is taken for stable only once seen twice.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc
from grpc import aio

__all__ = ["Ended", "Handler", "StableWrappers", "watched"]

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Ended: TypeAlias = "Callable[[aio.ServicerContext[Any, Any], float, BaseException | None], None]"
"""Called when a call's handler is done, with the call's context, ``time.perf_counter()`` when
the handler started, and what it raised (None when it returned)."""


def watched(handler: Handler, ended: Ended) -> Handler:
    """``handler``, of any of gRPC's four kinds, calling ``ended`` when it is done."""
    # grpc.aio runs coroutine handlers; the grpc stubs type them as synchronous.
    inner: Any
    parse, serialize = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary is not None or handler.stream_unary is not None:
        inner = handler.unary_unary or handler.stream_unary

        async def one(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:  # noqa: ANN401
            started = time.perf_counter()
            try:
                answer = await inner(request, context)
            except BaseException as error:
                ended(context, started, error)
                raise
            ended(context, started, None)
            return answer

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(one, parse, serialize)
        return grpc.stream_unary_rpc_method_handler(one, parse, serialize)
    inner = handler.unary_stream or handler.stream_stream

    async def many(
        request: Any,  # noqa: ANN401 - a message, or an iterator of messages
        context: aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[Any]:
        started = time.perf_counter()
        try:
            async for answer in inner(request, context):
                yield answer
        except BaseException as error:
            ended(context, started, error)
            raise
        ended(context, started, None)

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(many, parse, serialize)
    return grpc.stream_stream_rpc_method_handler(many, parse, serialize)


class StableWrappers:
    """Each method's wrapped handler, built once its handler has proved stable."""

    def __init__(self, wrap: Callable[[str, Handler], Handler]) -> None:
        """Wrap with ``wrap(method path, handler)``."""
        self._wrap = wrap
        self._seen: dict[str, Handler] = {}
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def of(self, path: str, handler: Handler) -> Handler:
        """The wrapped ``handler`` of the method at ``path``: built now, or kept from before."""
        kept = self._wrapped.get(path)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = self._wrap(path, handler)
        if self._seen.get(path) is handler:
            self._wrapped[path] = (handler, wrapped)
        self._seen[path] = handler
        return wrapped
