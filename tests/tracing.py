"""Spans kept in memory, for the tests of what traces say.

The SDK makes its CLIENT spans with OpenTelemetry's global tracer provider, which a process
can set only once. The suite sets it once, for the first test that asks (the session
fixture ``span_recorder`` in tests/conftest.py), to a provider whose tracers trace only
while a test records, and otherwise are OpenTelemetry's no-op tracer: the tests that run
after make no span, and their calls carry no trace context (the hostile suite checks every
header a client sends). Test servers take the same provider
(``ThreadedServer(tracer_provider=...)``), so both sides land in one exporter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import Attributes

_NO_TRACER = trace.NoOpTracer()


class _Switched(trace.TracerProvider):
    """Tracers of ``inner`` while ``on``; no-op tracers otherwise."""

    def __init__(self, inner: SdkTracerProvider) -> None:
        self.inner = inner
        self.on = False

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        tracer = self.inner.get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        return _SwitchedTracer(self, tracer)


class _SwitchedTracer(trace.Tracer):
    """``tracer`` while the provider is on, the no-op tracer otherwise (asked at each span)."""

    def __init__(self, switch: _Switched, tracer: trace.Tracer) -> None:
        self._switch = switch
        self._tracer = tracer

    def _now(self) -> trace.Tracer:
        return self._tracer if self._switch.on else _NO_TRACER

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._now().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._now().start_as_current_span(*args, **kwargs)


@dataclass
class SpanRecorder:
    """The suite's tracer provider, global and for test servers, and what it recorded."""

    provider: _Switched
    exporter: InMemorySpanExporter

    @classmethod
    def install(cls) -> SpanRecorder:
        """Make the global tracer provider one that records into memory (once a process)."""
        exporter = InMemorySpanExporter()
        inner = SdkTracerProvider()
        # Exported as each span ends, in the thread that ends it: nothing waits in a queue.
        inner.add_span_processor(SimpleSpanProcessor(exporter))
        provider = _Switched(inner)
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            raise RuntimeError("something else set the global tracer provider first")
        return cls(provider, exporter)

    @contextmanager
    def recording(self) -> Iterator[SpanRecorder]:
        """Record the spans made inside; forget them after."""
        self.exporter.clear()
        self.provider.on = True
        try:
            yield self
        finally:
            self.provider.on = False
            self.exporter.clear()

    def spans(self) -> tuple[ReadableSpan, ...]:
        """Every span that has ended since recording began."""
        return self.exporter.get_finished_spans()
