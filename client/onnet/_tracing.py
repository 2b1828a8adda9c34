"""CLIENT spans for the SDK's calls, when the application traces with OpenTelemetry.

The SDK is a library: it never configures tracing. It asks OpenTelemetry's API for the
global tracer provider, which the application sets up (SDK, exporter, sampler), and makes
one CLIENT span per call (retries included: the server makes a span for each attempt, a
child of this one). The span's context travels to the server in the call's metadata (W3C
``traceparent`` and ``tracestate``, never baggage), so the client's and the server's spans
share a trace.

OpenTelemetry is optional. It is looked for only once the application has imported its API:
a process that never did cannot have set a provider, so the SDK neither imports it (nor
needs it installed) nor allocates anything per call; each call costs a dictionary look-up.
Until a provider is set, the API's own check is all a call pays.

A span carries the method and the status code: never the request, the metadata, the
server's message, nor an exception's text (any of which could hold a number or a token).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import grpc

from onnet._errors import ServiceError

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["ClientSpan", "client_span"]

_API = "opentelemetry.trace"


@dataclass(frozen=True)
class _Api:
    """What the check of each call needs from OpenTelemetry's API, looked up once."""

    provider: Callable[[], TracerProvider]
    placeholders: tuple[type[TracerProvider], ...]
    """The API's own providers, which stand in until the application sets one."""


_api: _Api | None = None
_tracer: Tracer | None = None
"""The SDK's tracer, once the application has set a provider (it can be set only once)."""


def _current_tracer() -> Tracer | None:
    """The SDK's tracer, or None while the application does not trace."""
    global _api, _tracer  # noqa: PLW0603 - caches of what is decided once
    if _tracer is not None:
        return _tracer
    if _api is None:
        if sys.modules.get(_API) is None:  # never imported, so no provider is set
            return None
        from opentelemetry import trace  # noqa: PLC0415 - imported by the application already

        placeholders = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        _api = _Api(trace.get_tracer_provider, placeholders)
    provider = _api.provider()
    if isinstance(provider, _api.placeholders):
        return None  # the application set no provider (yet)
    _tracer = provider.get_tracer("onnet")
    return _tracer


class ClientSpan:
    """One call's CLIENT span, and the call's metadata carrying its context.

    A context manager: it ends the span when the call ends, with the call's status code.
    """

    __slots__ = ("_span", "metadata")

    def __init__(self, span: Span, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self._span = span
        self.metadata = metadata
        """The call's metadata, then the trace context."""

    def __enter__(self) -> ClientSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415 - see the module doc

        span = self._span
        if exc is None:
            span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])
        else:
            # The status code, or the exception's type: never its text.
            if isinstance(exc, ServiceError):
                span.set_attribute("rpc.grpc.status_code", exc.code.value[0])
                span.set_attribute("error.type", exc.code.name)
            else:
                span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR))
        span.end()


def client_span(
    service: str, method: str, metadata: Sequence[tuple[str, str | bytes]]
) -> ClientSpan | None:
    """A started CLIENT span for ``service``/``method``, or None when the app does not trace.

    Its ``metadata`` is ``metadata`` with the span's context appended.
    """
    tracer = _current_tracer()
    if tracer is None:
        return None
    from opentelemetry import trace  # noqa: PLC0415 - see the module doc
    from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
        TraceContextTextMapPropagator,
    )

    span = tracer.start_span(
        f"{service}/{method}",
        kind=trace.SpanKind.CLIENT,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
    )
    carrier: dict[str, str] = {}
    # W3C trace context only, whatever propagators the application set up: its baggage is
    # its own key-value data, which a privacy service has no business receiving.
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return ClientSpan(span, (*metadata, *carrier.items()))
