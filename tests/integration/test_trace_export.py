"""`onnet serve` exports its spans over OTLP as the OTEL_* variables say, the last ones at stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.security import registry_client
from tests.servers import server_process
from tests.tracing import SpanRecorder


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that keeps what it is sent."""

    def __init__(self) -> None:
        self.services: list[str] = []
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for resource_spans in request.resource_spans:
                for attribute in resource_spans.resource.attributes:
                    if attribute.key == "service.name":
                        self.services.append(attribute.value.string_value)
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    """A collector on a loopback port, stopped after the test."""
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    # The generated gRPC module has no type stubs.
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield receiver, port
    server.stop(None)


def test_spans_reach_the_collector_by_the_end_of_the_server(
    collector: tuple[Collector, int], recorded_spans: SpanRecorder
) -> None:
    """The server's spans reach the collector, in the trace of the SDK's call that caused
    them (the server samples as its caller did, under the default parent-based sampler)."""
    receiver, port = collector
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "onnet-under-test",
        # Long enough that only the flush at stop can have sent the spans.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    with server_process(env) as server:
        with registry_client(server.target) as registry:
            assert registry.lookup(["+14155550100"]) == [None]
        assert "tracing calls: spans exported to otlp" in server.log()
        assert receiver.spans == []
        assert server.terminate() == 0
    names = {span.name for span in receiver.spans}
    assert "lookup holders" in names
    assert set(receiver.services) == {"onnet-under-test"}
    [served] = [span for span in receiver.spans if span.name == "onnet.v1.Registry/Lookup"]
    [call] = [span for span in recorded_spans.spans() if span.name == served.name]
    assert call.context is not None
    assert int.from_bytes(served.trace_id, "big") == call.context.trace_id
    assert int.from_bytes(served.parent_span_id, "big") == call.context.span_id
