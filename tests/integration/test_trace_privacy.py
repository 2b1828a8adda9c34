"""Evidence for the traces' promise: spans say what happened and how long it took, never whom
it concerned. And evidence that the spans promised are there, client and server in one trace.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

import onnet
import onnet.v1.discovery_pb2
from onnet_server.core.fingerprint import Fingerprinter
from tests.security import SERVICE_NAME, registry_client, security
from tests.servers import ThreadedServer, fresh_config
from tests.tracing import SpanRecorder

USERS = {
    f"user-{secrets.token_hex(4)}": n for n in ("+14155550100", "+442079460958", "+4930901820")
}
IMPORTED = {f"bulk-{secrets.token_hex(4)}": n for n in ("+12025550143", "+61291234567")}
OUTSIDERS = ["+33612345678", "+819012345678", "+61412345678", "+5511912345678"]
STRANGER = f"stranger-{secrets.token_hex(4)}"
"""An account with a valid credential that the registry does not know."""
BAD_CREDENTIAL = f"not-a-credential-{secrets.token_hex(8)}"
QUOTA = 10


def secret_spellings(secret: bytes) -> set[str]:
    encoded = base64.b64encode(secret).decode()
    return {secret.hex(), secret.hex()[:16], secret.hex().upper()[:16], encoded[:20]}


def forbidden_strings(pepper: bytes, credentials: list[str], tokens: list[bytes]) -> set[str]:
    """Every spelling of what a span must never carry."""
    fingerprinter = Fingerprinter(pepper)
    found = {*USERS, *IMPORTED, STRANGER, SERVICE_NAME}
    for e164 in [*USERS.values(), *IMPORTED.values(), *OUTSIDERS]:
        digest = onnet.contact_hash(e164)
        found |= {e164, e164[1:], e164[-7:]}
        found |= secret_spellings(digest) | secret_spellings(fingerprinter.fingerprint(digest))
    found |= secret_spellings(pepper)
    for credential in credentials:
        found.add(credential)
        found |= {part[:20] for part in credential.split(".") if len(part) >= 16}
    for token in tokens:
        found |= secret_spellings(token)
    return found


def every_text(span: ReadableSpan) -> Iterator[str]:
    """Each string a span exports: its name, attributes, events, links, status, resource."""
    yield span.name
    attribute_sets = [span.attributes, span.resource.attributes]
    attribute_sets += [event.attributes for event in span.events]
    attribute_sets += [link.attributes for link in span.links]
    for event in span.events:
        yield event.name
    for attributes in attribute_sets:
        for key, value in (attributes or {}).items():
            yield key
            yield str(value)
    if span.status.description:
        yield span.status.description
    if span.context is not None:
        yield span.context.trace_state.to_header()


def run_session(
    server: ThreadedServer, account_credential: str, stranger_credential: str
) -> list[bytes]:
    """Register, move, erase, block, import, look up, screen; discover, re-sync, private mode;
    bad input, an unknown credential, an unknown account, the quota. Returns the re-sync
    tokens the client was given."""
    users = list(USERS)
    account = users[2]  # discovers; users[1] blocks the number it holds
    with registry_client(server.target) as registry:
        for user_id, e164 in USERS.items():
            registry.register(user_id, e164)
        registry.register(users[0], OUTSIDERS[0], discoverable=False)  # a move
        registry.register(users[0], USERS[users[0]])
        with pytest.raises(onnet.InvalidArgumentError):
            registry.register(users[0], "+1 415 555 0100")
        assert registry.block(users[0], OUTSIDERS[1])
        registry.unregister(users[0])
        with pytest.raises(onnet.NotFoundError):
            registry.unregister(users[0])
        assert registry.block(users[1], USERS[account])
        rows = [onnet.ImportRow(user_id, e164) for user_id, e164 in IMPORTED.items()]
        assert registry.import_users(rows).imported == len(rows)
        assert registry.lookup([USERS[users[1]], OUTSIDERS[3]]) == [users[1], None]
        assert registry.screen(USERS[account], users[1]) is onnet.Verdict.BLOCKED
    channel = security().channel()
    with onnet.Client(server.target, credentials=channel, token=account_credential) as client:
        book = [*USERS.values(), *OUTSIDERS[:2], "555-0100"]
        first = client.discover(book, "US")
        assert [m.user_id for m in first.matches] == [account]  # users[1] blocks us
        tokens = [client.sync_state.token]
        assert client.discover(book, "US").matches == first.matches  # a free re-sync
        tokens.append(client.sync_state.token)
        with pytest.raises(onnet.InvalidArgumentError):
            client.calls.discover(onnet.v1.discovery_pb2.DiscoverRequest(hashes=b"x" * 33))
        private_book = [USERS[users[0]], USERS[users[1]], *OUTSIDERS[2:]]
        assert not client.discover(private_book, "US", private=True).matches
        assert client.quota_remaining() == 1  # 5 hashes, then 4 blinded elements, of 10
        with pytest.raises(onnet.QuotaExceededError):
            client.discover(OUTSIDERS[2:], "US")
    refused: list[tuple[str, type[onnet.ServiceError]]] = [
        (BAD_CREDENTIAL, onnet.AuthenticationError),
        (stranger_credential, onnet.PermissionDeniedError),
    ]
    for credential, refusal in refused:
        with (
            onnet.Client(server.target, credentials=channel, token=credential) as client,
            pytest.raises(refusal),
        ):
            client.get_config()
    return tokens


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_traced_session_names_no_one(
    store: str, request: pytest.FixtureRequest, recorded_spans: SpanRecorder
) -> None:
    """Every string of every span, client and server, holds no number, hash, fingerprint,
    credential, re-sync token, user id or account; and the promised spans are there."""
    pepper = secrets.token_bytes(32)
    overrides: dict[str, object] = {"pepper_hex": pepper.hex(), "quota_new_numbers": QUOTA}
    if store == "redis":
        overrides["redis_url"] = request.getfixturevalue("redis_url")
    credentials = [security().token(list(USERS)[2]), security().token(STRANGER), BAD_CREDENTIAL]
    config = fresh_config(**overrides)
    server = ThreadedServer(config, tracer_provider=recorded_spans.provider).start()
    try:
        tokens = run_session(server, *credentials[:2])
    finally:
        server.stop()
    spans = recorded_spans.spans()

    forbidden = forbidden_strings(pepper, credentials, tokens)
    leaked = sorted(
        {(text, secret) for span in spans for text in every_text(span) for secret in forbidden
         if secret in text}
    )  # fmt: skip
    assert leaked == []

    check_promised_spans(spans, redis=store == "redis")


def check_promised_spans(spans: tuple[ReadableSpan, ...], *, redis: bool) -> None:
    by_id = {span.context.span_id: span for span in spans if span.context is not None}

    def parent_of(span: ReadableSpan) -> ReadableSpan | None:
        return by_id.get(span.parent.span_id) if span.parent is not None else None

    calls = [s for s in spans if s.kind is SpanKind.CLIENT and "rpc.system" in (s.attributes or {})]
    served = [s for s in spans if s.kind is SpanKind.SERVER]
    assert calls
    assert served
    # One server span per call, a child of the SDK's span in the same trace (the context
    # went in the call's metadata), with the method and the status code.
    for span in served:
        attributes = span.attributes or {}
        assert span.name == f"{attributes['rpc.service']!s}/{attributes['rpc.method']!s}"
        assert isinstance(attributes["rpc.grpc.status_code"], int)
        caller = parent_of(span)
        assert caller is not None
        assert caller in calls
        assert caller.name == span.name
        assert caller.context is not None
        assert span.context is not None
        assert caller.context.trace_id == span.context.trace_id
    for call in calls:
        children = [s for s in served if parent_of(s) is call]
        assert len(children) == 1, call.name
        assert (call.attributes or {}).get("rpc.grpc.status_code") == (
            children[0].attributes or {}
        ).get("rpc.grpc.status_code")
    outcomes = {(s.name, (s.attributes or {})["rpc.grpc.status_code"]) for s in served}
    code = {status: status.value[0] for status in grpc.StatusCode}
    for method in ("Register", "Unregister", "Block", "ImportUsers", "Lookup", "Screen"):
        assert (f"onnet.v1.Registry/{method}", code[grpc.StatusCode.OK]) in outcomes
    for method in ("GetConfig", "Discover", "BlindEvaluate", "FetchBuckets"):
        assert (f"onnet.v1.Discovery/{method}", code[grpc.StatusCode.OK]) in outcomes
    assert {
        ("onnet.v1.Registry/Register", code[grpc.StatusCode.INVALID_ARGUMENT]),
        ("onnet.v1.Registry/Unregister", code[grpc.StatusCode.NOT_FOUND]),
        ("onnet.v1.Discovery/Discover", code[grpc.StatusCode.INVALID_ARGUMENT]),
        ("onnet.v1.Discovery/Discover", code[grpc.StatusCode.RESOURCE_EXHAUSTED]),
        ("onnet.v1.Discovery/GetConfig", code[grpc.StatusCode.UNAUTHENTICATED]),
        ("onnet.v1.Discovery/GetConfig", code[grpc.StatusCode.PERMISSION_DENIED]),
    } <= outcomes

    # The lookups, inside their calls, with what they counted.
    def children_named(name: str, parent: str) -> list[ReadableSpan]:
        """The spans called ``name``: each a child of a call's span, some of ``parent``'s."""
        found = [s for s in spans if s.name == name]
        parents = [parent_of(s) for s in found]
        assert all(above is not None and above.kind is SpanKind.SERVER for above in parents)
        assert parent in {above.name for above in parents if above is not None}, name
        return found

    lookups = children_named("lookup", "onnet.v1.Discovery/Discover")
    counts = {((s.attributes or {})["onnet.hashes"], (s.attributes or {})["onnet.matches"])
              for s in lookups}  # fmt: skip
    assert (5, 1) in counts  # the first discover: five numbers, one match
    children_named("lookup holders", "onnet.v1.Registry/Lookup")
    children_named("lookup buckets", "onnet.v1.Discovery/FetchBuckets")

    # Redis round trips, each a child of the call it served; none without Redis.
    trips = [s for s in spans if (s.attributes or {}).get("db.system") == "redis"]
    if not redis:
        assert trips == []
        return
    assert trips
    for trip in trips:
        above = parent_of(trip)
        assert above is not None
        assert above.kind is SpanKind.SERVER
        assert trip.kind is SpanKind.CLIENT
    children_named("redis register", "onnet.v1.Registry/Register")
    children_named("redis import", "onnet.v1.Registry/ImportUsers")
    children_named("redis quota_charge", "onnet.v1.Discovery/Discover")
