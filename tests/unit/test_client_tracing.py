"""The SDK's spans: made with the application's provider, carried in the call's metadata, and
nothing at all (not even an import) when the application does not trace."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import grpc
import pytest
from opentelemetry import baggage, context
from opentelemetry.trace import SpanKind, StatusCode

import onnet
from onnet._tracing import client_span
from tests.servers import REPO, free_port
from tests.tracing import SpanRecorder

CREDENTIAL = ("authorization", "Bearer secret-credential")


def run_python(code: str, *args: str) -> str:
    """Run ``code`` in a fresh interpreter (with ``args``); its standard output."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_call_carries_its_span_in_the_metadata(recorded_spans: SpanRecorder) -> None:
    span = client_span("onnet.v1.Registry", "Lookup", (CREDENTIAL,))
    assert span is not None
    with pytest.raises(onnet.NotFoundError), span:
        raise onnet.NotFoundError(grpc.StatusCode.NOT_FOUND, "no such user: user-1234")
    assert span.metadata[0] == CREDENTIAL
    headers = dict(span.metadata[1:])
    [recorded] = recorded_spans.spans()
    assert recorded.context is not None
    version, trace_id, span_id, _flags = str(headers["traceparent"]).split("-")
    assert (version, int(trace_id, 16), int(span_id, 16)) == (
        "00",
        recorded.context.trace_id,
        recorded.context.span_id,
    )
    assert recorded.name == "onnet.v1.Registry/Lookup"
    assert recorded.kind is SpanKind.CLIENT
    assert recorded.status.status_code is StatusCode.ERROR
    assert not recorded.status.description  # the server's message could hold anything
    assert not recorded.events  # no exception recorded, with its text
    assert dict(recorded.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "onnet.v1.Registry",
        "rpc.method": "Lookup",
        "rpc.grpc.status_code": grpc.StatusCode.NOT_FOUND.value[0],
        "error.type": "NOT_FOUND",
    }


def test_the_span_is_a_child_of_the_applications(recorded_spans: SpanRecorder) -> None:
    tracer = recorded_spans.provider.get_tracer("the application")
    with tracer.start_as_current_span("import contacts") as outer:
        span = client_span("onnet.v1.Discovery", "Discover", ())
        assert span is not None
        with span:
            pass
    inner = next(s for s in recorded_spans.spans() if s.name == "onnet.v1.Discovery/Discover")
    assert inner.parent is not None
    assert inner.parent.span_id == outer.get_span_context().span_id


def test_the_applications_baggage_stays_with_it(recorded_spans: SpanRecorder) -> None:
    token = context.attach(baggage.set_baggage("user.id", "user-1234"))
    try:
        span = client_span("onnet.v1.Discovery", "Discover", ())
    finally:
        context.detach(token)
    assert span is not None
    with span:
        pass
    assert [name for name, _ in span.metadata] == ["traceparent"]


def test_outside_a_recording_the_suite_sends_no_trace_context(
    span_recorder: SpanRecorder,
) -> None:
    # What the hostile suite relies on, whichever tests ran first: no header is added.
    span = client_span("onnet.v1.Discovery", "Discover", (CREDENTIAL,))
    assert span is not None
    assert span.metadata == (CREDENTIAL,)


# The client's part of a call, in a fresh interpreter: sync and asyncio, to a port where
# nothing listens (so each fails as unavailable, once the SDK has done all it does).
_CALLS = """
    import asyncio
    import sys

    import grpc
    import onnet
    from onnet.v1 import discovery_pb2

    target = sys.argv[1]
    once = onnet.RetryPolicy(attempts=1)
    request = discovery_pb2.GetConfigRequest()
    calls = onnet.DiscoveryCalls(grpc.insecure_channel(target), timeout=5, retry=once)
    try:
        calls.get_config(request)
    except onnet.UnavailableError:
        pass

    async def main() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            calls = onnet.AsyncDiscoveryCalls(channel, timeout=5, retry=once)
            try:
                await calls.get_config(request)
            except onnet.UnavailableError:
                pass

    asyncio.run(main())
    loaded = [name for name, module in sys.modules.items() if name.startswith("opentelemetry")]
    print(sorted(name for name in loaded if sys.modules[name] is not None))
"""


def test_the_sdk_works_where_opentelemetry_cannot_be_imported() -> None:
    # None in sys.modules makes every import of the name fail, as if it were not installed.
    blocked = """
        import sys
        for name in ("opentelemetry", "opentelemetry.trace", "opentelemetry.propagate"):
            sys.modules[name] = None
    """
    code = textwrap.dedent(blocked) + textwrap.dedent(_CALLS)
    assert run_python(code, f"127.0.0.1:{free_port()}").strip() == "[]"


def test_an_application_that_does_not_trace_pays_no_import() -> None:
    assert run_python(_CALLS, f"127.0.0.1:{free_port()}").strip() == "[]"


def test_no_span_until_the_application_sets_a_provider() -> None:
    printed = run_python(
        """
        import opentelemetry.trace
        from onnet._tracing import client_span

        print(client_span("onnet.v1.Discovery", "Discover", ()))
        """
    )
    assert printed.strip() == "None"
