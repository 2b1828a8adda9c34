"""One SERVER span per call of onnet's services; the spans inside it (see ``spans.py``).

An interceptor of its own rather than OpenTelemetry's gRPC instrumentation, which records
the caller's address (personal data) and expects handlers of the kind each method was
declared with, where the gate serves every method as a streaming one.

It sits between the metrics interceptor and the gate. The span starts when a call's headers
arrive, so the gate's checks (credential, account, rate) are inside it, and ends when the
handler is done. It is the call's current span from then on (each call runs in a context of
its own), so the spans the stores make (``spans.py``) are its children. Its parent is the
caller's span, when the call's metadata carries one (W3C ``traceparent`` and
``tracestate``, read by the configured propagator).

A span is named by the method's path as the service descriptors have it ("onnet.v1.
Discovery/Discover"), never as a caller wrote it: calls of other paths (health checks,
reflection, methods nobody serves) make no span. Its attributes are the method, the status
code, and what the servicers add (``onnet.batch_size``); its status is ERROR, with no
description, for the codes that say the server failed, as OpenTelemetry's conventions for
gRPC servers have it (a refusal is the caller's doing: its code says which). No exception
is recorded in any span: an exception's text could hold what a caller sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc import aio
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider

from onnet_server import spans
from onnet_server.api.status import ended_with
from onnet_server.api.watched import Handler, StableWrappers, watched

__all__ = ["ServerSpans"]

_SERVER_FAILURES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_SPAN: ContextVar[trace.Span] = ContextVar("onnet_server_span")

Metadata = Sequence[tuple[str, str | bytes]]


class _MetadataGetter(Getter[Metadata]):
    """Reads a propagator's fields (``traceparent``...) from a call's metadata."""

    def get(self, carrier: Metadata, key: str) -> list[str] | None:
        """The text values of ``key`` (binary ones are no trace context), or None."""
        values = [value for name, value in carrier if name == key and isinstance(value, str)]
        return values or None

    def keys(self, carrier: Metadata) -> list[str]:
        """Every key of the metadata."""
        return [name for name, _ in carrier]


_METADATA = _MetadataGetter()


class ServerSpans(aio.ServerInterceptor):
    """Makes a SERVER span of each call of the methods of the given services."""

    def __init__(self, provider: TracerProvider, services: Iterable[ServiceDescriptor]) -> None:
        """Trace with ``provider`` the calls of every method of ``services``."""
        self._tracer = provider.get_tracer("onnet_server")
        self._methods = {
            f"/{service.full_name}/{method.name}": (
                f"{service.full_name}/{method.name}",
                {"rpc.system": "grpc", "rpc.service": service.full_name, "rpc.method": method.name},
            )
            for service in services
            for method in service.methods
        }
        self._ending = StableWrappers(lambda _path, handler: watched(handler, _ended))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Start the call's span, make it current, and end it when the handler is done."""
        path = handler_call_details.method
        traced = self._methods.get(path)
        if traced is None:
            return await continuation(handler_call_details)
        name, attributes = traced
        parent = propagate.extract(handler_call_details.invocation_metadata or (), getter=_METADATA)
        span = self._tracer.start_span(name, parent, SpanKind.SERVER, attributes)
        # Never detached: the context is the call's own, and ends with it.
        context.attach(trace.set_span_in_context(span, parent))
        _SPAN.set(span)
        spans.begin_call(_CallSpans(self._tracer, span))
        try:
            handler = await continuation(handler_call_details)
        except BaseException:
            _end(span, grpc.StatusCode.UNKNOWN)
            raise
        if handler is None:  # a method of a service this server does not serve
            _end(span, grpc.StatusCode.UNIMPLEMENTED)
            return None
        return self._ending.of(path, handler)


def _ended(
    call: aio.ServicerContext[Any, Any], started: float, error: BaseException | None
) -> None:
    """End the call's span with the call's status code."""
    _end(_SPAN.get(), ended_with(call, error))


def _end(span: trace.Span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_attribute("error.type", code.name)
    if code in _SERVER_FAILURES:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


class _CallSpans:
    """The spans inside one call (``spans.CallSpans``)."""

    __slots__ = ("_span", "_tracer")

    def __init__(self, tracer: Tracer, span: trace.Span) -> None:
        self._tracer = tracer
        self._span = span

    def child(
        self, name: str, attributes: Mapping[str, spans.Value], *, client: bool
    ) -> AbstractContextManager[spans.Span]:
        """A child span of the current one, current while entered."""
        return _child(
            self._tracer, name, attributes, SpanKind.CLIENT if client else SpanKind.INTERNAL
        )

    def annotate(self, key: str, value: spans.Value) -> None:
        """Set an attribute of the call's span."""
        self._span.set_attribute(key, value)


@contextmanager
def _child(
    tracer: Tracer, name: str, attributes: Mapping[str, spans.Value], kind: SpanKind
) -> Iterator[trace.Span]:
    """A span that says an exception's type when one ends it, never its text."""
    with tracer.start_as_current_span(
        name,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as error:
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR))
            raise
