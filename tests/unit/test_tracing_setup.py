"""Whether the server traces, decided from OTEL_* variables; a refusal it cannot keep."""

from __future__ import annotations

import sys

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider, export
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from onnet_server.config import ConfigError
from onnet_server.tracing import tracing_from_env

_SDK_MODULES = (
    "opentelemetry.sdk",
    "opentelemetry.sdk.resources",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)


@pytest.fixture
def exporters(monkeypatch: pytest.MonkeyPatch) -> list[SpanExporter]:
    """The exporters of each batch processor the server makes (in order)."""
    made: list[SpanExporter] = []

    class Recorded(BatchSpanProcessor):
        def __init__(self, exporter: SpanExporter) -> None:
            made.append(exporter)
            super().__init__(exporter)

    monkeypatch.setattr(export, "BatchSpanProcessor", Recorded)
    return made


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_TRACES_EXPORTER": ""},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_without_an_exporter_the_server_does_not_trace(env: dict[str, str]) -> None:
    tracing = tracing_from_env(env)
    assert tracing.provider is None
    tracing.shutdown()  # nothing to stop


def test_otlp_and_console_exporters(
    monkeypatch: pytest.MonkeyPatch, exporters: list[SpanExporter]
) -> None:
    # The exporter reads its endpoint itself; nothing is sent before a span ends.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    tracing = tracing_from_env({"OTEL_TRACES_EXPORTER": "otlp, console"})
    try:
        assert [type(exporter) for exporter in exporters] == [
            OTLPSpanExporter,
            ConsoleSpanExporter,
        ]
        assert tracing.exporters == ("otlp", "console")
        assert isinstance(tracing.provider, TracerProvider)
        assert tracing.provider.resource.attributes["service.name"] == "onnet"
    finally:
        tracing.shutdown()


def test_the_service_name_is_the_operators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "onnet-eu-1")
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "onnet-eu-1"}
    tracing = tracing_from_env(env)
    try:
        assert isinstance(tracing.provider, TracerProvider)
        assert tracing.provider.resource.attributes["service.name"] == "onnet-eu-1"
    finally:
        tracing.shutdown()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "unknown exporter zipkin"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: onnet exports OTLP over gRPC only",
        ),
    ],
)
def test_settings_it_cannot_keep_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tracing_from_env(env)


def test_asked_to_trace_without_the_extra_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes an import fail, as if the package were not installed.
    for name in _SDK_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError) as refused:
        tracing_from_env({"OTEL_TRACES_EXPORTER": "otlp"})
    assert "OTEL_TRACES_EXPORTER=otlp" in str(refused.value)
    assert "pip install 'onnet[otel]'" in str(refused.value)
