"""Whether and how ``onnet serve`` traces, from OpenTelemetry's own OTEL_* variables.

Tracing is on when OTEL_TRACES_EXPORTER names exporters (comma-separated): ``otlp``, OTLP
over gRPC, or ``console``, JSON on standard output. Without it, with ``none``, or with
OTEL_SDK_DISABLED=true, the server makes no span and pays nothing for spans. The rest is
read by OpenTelemetry's SDK itself, as it documents: OTEL_SERVICE_NAME (here "onnet" when
neither it nor OTEL_RESOURCE_ATTRIBUTES names the service), OTEL_EXPORTER_OTLP_ENDPOINT and
the other OTEL_EXPORTER_OTLP_* settings, OTEL_TRACES_SAMPLER and its argument, OTEL_BSP_*
(the batch processor that exports spans off the event loop), OTEL_PROPAGATORS.

The SDK and the exporter are the optional extra ``onnet[otel]``. A server asked to trace
without them refuses to start, with a ConfigError saying what to install, rather than run
without the traces its operator is counting on.

The provider is the server's own, handed to ``start_server``, not OpenTelemetry's global
one: several servers in one process (the tests) each trace as they were told.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onnet_server.config import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import TracerProvider

__all__ = ["EXPORTERS", "Tracing", "tracing_from_env"]

EXPORTERS = ("otlp", "console")
"""The values of OTEL_TRACES_EXPORTER that onnet understands (besides ``none``)."""
_INSTALL = "pip install 'onnet[otel]'"


@dataclass(frozen=True)
class Tracing:
    """The server's tracer provider, if it traces, and how to stop it."""

    provider: TracerProvider | None = None
    """What ``start_server`` makes spans with; None when the server does not trace."""
    exporters: tuple[str, ...] = ()
    """Where spans go (OTEL_TRACES_EXPORTER's names)."""
    _shutdown: Callable[[], object] | None = None

    def shutdown(self) -> None:
        """Export the spans still waiting, then stop exporting (blocks while it flushes)."""
        if self._shutdown is not None:
            self._shutdown()


def tracing_from_env(env: Mapping[str, str]) -> Tracing:
    """The tracing that ``env`` asks for; ConfigError when it cannot be had."""
    exporters = _exporters(env)
    if not exporters:
        return Tracing()
    setting = f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']}"
    try:
        # Imported only here: without the extra, a server that does not trace still runs.
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

        made = [_exporter(name, env) for name in exporters]
    except ImportError as missing:
        raise ConfigError(
            f"{setting} asks for traces, but OpenTelemetry is not installed "
            f"(no module {missing.name}): {_INSTALL}"
        ) from None
    named = "OTEL_SERVICE_NAME" in env or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create(None if named else {SERVICE_NAME: "onnet"}))
    for exporter in made:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider, tuple(exporters), provider.shutdown)


def _exporters(env: Mapping[str, str]) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names; none when tracing is off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [name.strip() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [name for name in names if name and name != "none"]
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {', '.join(unknown)} "
            f"(onnet exports to {' or '.join(EXPORTERS)}, or none)"
        )
    return list(dict.fromkeys(names))


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    """The exporter called ``name``, configured by the SDK from the environment."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

        return ConsoleSpanExporter()
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(variable)
        if protocol:
            if protocol != "grpc":
                # The extra brings OTLP over gRPC only: exporting over HTTP would need another
                # package, and an endpoint that reads HTTP.
                raise ConfigError(
                    f"{variable}={protocol}: onnet exports OTLP over gRPC only (grpc)"
                )
            break
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()
