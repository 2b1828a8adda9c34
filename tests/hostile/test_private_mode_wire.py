"""P6 on the wire: every byte a private-mode client sends, read and accounted for.

DESIGN.md P6: in private mode the server learns neither a contact's hash nor the contact; it
sees blinded ristretto255 elements, then only short bucket prefixes. Comparing results cannot
prove that (hashed mode finds the same matches), so these tests put a recording TCP relay
between the real SDK and a real server (plaintext on loopback so that the relay can read it;
credentials are still checked), decode everything the client sent as HTTP/2 with ``h2``,
reassemble each call's gRPC messages and check them field by field, then scan the raw bytes,
the decoded headers and the messages for anything that identifies a contact: its contact
hash, its number as text, its OPRF output, or its unblinded OPRF elements.

The inspector is itself tested: the same checks, run on sessions of clients that leak (private
mode switched off, as in the security review's mutation; elements sent unblinded; bucket
numbers with more bits than announced), must each report the leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import phonenumbers
import pysodium
import pytest
from google.protobuf.message import DecodeError

import onnet
from onnet._credentials import KIND_SERVICE
from onnet._private import PrivatePlan
from onnet.protocol import buckets, oprf
from onnet.v1 import discovery_pb2
from tests.security import DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_NUMBER, SERVICE_NAME, security
from tests.servers import ThreadedServer

_SERVICE = "/onnet.v1.Discovery/"
GET_CONFIG = _SERVICE + "GetConfig"
BLIND_EVALUATE = _SERVICE + "BlindEvaluate"
FETCH_BUCKETS = _SERVICE + "FetchBuckets"
PRIVATE_METHODS = frozenset({GET_CONFIG, BLIND_EVALUATE, FETCH_BUCKETS})

# The request headers of grpc's HTTP/2 transport and the SDK's credential. Any other header
# is a channel the inspector cannot vouch for (a "-bin" one would even hide bytes in base64).
ALLOWED_HEADERS = frozenset(
    {
        ":method",
        ":scheme",
        ":path",
        ":authority",
        "te",
        "content-type",
        "user-agent",
        "grpc-timeout",
        "grpc-accept-encoding",
        "authorization",
    }
)
_ELEMENT = oprf.ELEMENT_SIZE
_WINDOW = 16  # the shortest piece of a 32- or 64-byte secret that the scan looks for


@dataclass(frozen=True)
class Contact:
    """A number of the address book, how the book spells it, and who holds it."""

    e164: str
    spellings: tuple[str, ...]
    user: str | None = None
    discoverable: bool = True


CONTACTS = (
    Contact("+14155550100", ("(415) 555-0100", "415.555.0100"), "alice"),  # spelled twice
    Contact("+442079460958", ("+44 20 7946 0958",), "bob"),
    Contact("+4930901820", ("+49 30 901820",), "carol", discoverable=False),  # hidden
    Contact("+33612345678", ("+33 6 12 34 56 78",), "dave"),
    Contact("+12025550123", ("+1 202 555 0123",)),
    Contact("+61293744000", ("+61 2 9374 4000",)),
    Contact("+819012345678", ("+81 90-1234-5678",)),
)
BOOK = [spelling for contact in CONTACTS for spelling in contact.spellings] + ["911"]
EXPECTED = {(c.e164, c.user) for c in CONTACTS if c.user and c.discoverable}
# Enough registered users that GetConfig announces buckets of a few bits (16 to 31 entries
# a bucket): "below 2^bits" is then a real bound, not just "bucket 0".
FILLER_USERS = 200
_ONE = (1).to_bytes(oprf.SCALAR_SIZE, "little")


@dataclass(frozen=True)
class Secrets:
    """What would identify one contact on the wire, computed apart from the SDK's client."""

    contact: Contact
    contact_hash: bytes
    """SHA-256("onnet/contact/v1:" + E.164), as DESIGN.md defines it."""
    element: bytes
    """HashToGroup(E.164): the element before blinding."""
    evaluated: bytes
    """key * HashToGroup(E.164): the server's evaluation, unblinded."""
    output: bytes
    """The 64-byte OPRF output T."""


@dataclass(frozen=True)
class World:
    """A plaintext server with registered users, and what the inspector must know."""

    target: str
    token: str
    bits: int
    """The bucket prefix length GetConfig announces."""
    secrets: tuple[Secrets, ...]

    @property
    def authorization(self) -> str:
        return f"Bearer {self.token}"


def _reference_secrets(client: onnet.Client) -> tuple[Secrets, ...]:
    """Each contact's OPRF values, from one hand-made BlindEvaluate (not through the relay)."""
    blinds = [oprf.blind(c.e164.encode("ascii")) for c in CONTACTS]
    request = discovery_pb2.BlindEvaluateRequest(blinded_elements=b"".join(e for _, e in blinds))
    evaluated = client.calls.blind_evaluate(request).evaluated_elements
    found = []
    for index, (contact, (blind, _)) in enumerate(zip(CONTACTS, blinds, strict=True)):
        message = contact.e164.encode("ascii")
        answer = evaluated[index * _ELEMENT : (index + 1) * _ELEMENT]
        inverse = pysodium.crypto_core_ristretto255_scalar_invert(blind)
        found.append(
            Secrets(
                contact,
                hashlib.sha256(b"onnet/contact/v1:" + message).digest(),
                oprf._hash_to_group(message, oprf.Mode.OPRF),
                bytes(pysodium.crypto_scalarmult_ristretto255(inverse, answer)),
                oprf.finalize(message, blind, answer),
            )
        )
    return tuple(found)


def _check_references(client: onnet.Client, world: World) -> None:
    """The reference outputs open the registered users' entries: they are the server's T."""
    for item in world.secrets:
        bucket = buckets.bucket_of(item.output, world.bits)
        request = discovery_pb2.FetchBucketsRequest(prefix_bits=world.bits, buckets=[bucket])
        (answer,) = client.calls.fetch_buckets(request).buckets
        opened = {buckets.open_entry(item.output, entry) for entry in answer.entries} - {None}
        holder = item.contact.user if item.contact.discoverable else None
        assert opened == ({holder} if holder else set())


@pytest.fixture
def world(make_server: Callable[..., ThreadedServer]) -> World:
    # No TLS, so that the relay sees what the client sends; the credential keys stay.
    server = make_server(tls_cert=None, tls_key=None)
    service_token = security().token(SERVICE_NAME, KIND_SERVICE)
    with onnet.RegistryClient(server.target, token=service_token) as registry:
        registry.register(DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_NUMBER, discoverable=False)
        for contact in CONTACTS:
            if contact.user:
                registry.register(contact.user, contact.e164, discoverable=contact.discoverable)
        rows = (
            onnet.ImportRow(f"filler-{i}", f"+1202555{2000 + i:04d}") for i in range(FILLER_USERS)
        )
        assert registry.import_users(rows).rejected == []
    token = security().token(DEFAULT_ACCOUNT)
    with onnet.Client(server.target, token=token) as client:  # straight to the server
        bits = client.get_config().bucket_prefix_bits
        assert bits >= 2
        built = World(server.target, token, bits, _reference_secrets(client))
        _check_references(client, built)
    return built


class RecordingRelay:
    """A TCP relay on 127.0.0.1 that forwards both ways and keeps what the client sent."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.target = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sent: list[bytearray] = []
        self._sockets: list[socket.socket] = []
        self._uploads: list[threading.Thread] = []
        self._downloads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            server = socket.create_connection(self._upstream)
            sent = bytearray()
            self._sent.append(sent)
            self._sockets += [client, server]
            for pump, args in (
                (self._uploads, (client, server, sent)),
                (self._downloads, (server, client, None)),
            ):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                thread.start()
                pump.append(thread)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if record is not None:
                    record += chunk
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> list[bytes]:
        """Wait until the client hangs up, stop, and return what it sent per connection."""
        self._stop.set()
        self._acceptor.join()
        for upload in self._uploads:
            upload.join(timeout=5)
        for sock in self._sockets:
            sock.close()
        self._listener.close()
        for download in self._downloads:
            download.join(timeout=5)
        return [bytes(sent) for sent in self._sent]


def record(upstream: str, session: Callable[[str], None]) -> list[bytes]:
    """Run ``session`` against a relay to ``upstream``; the client's bytes per connection."""
    relay = RecordingRelay(upstream)
    try:
        session(relay.target)
    finally:
        sent = relay.close()
    return sent


def discover(world: World, *, private: bool = True, kind: str = "sync") -> Callable[[str], None]:
    """A session: a fresh SDK client discovers BOOK through the relay and checks the answer."""

    async def run_async(target: str) -> onnet.DiscoveryResult:
        async with onnet.AsyncClient(target, token=world.token) as client:
            return await client.discover(BOOK, "US", private=private)

    def session(target: str) -> None:
        if kind == "async":
            result = asyncio.run(run_async(target))
        else:
            with onnet.Client(target, token=world.token) as client:
                result = client.discover(BOOK, "US", private=private)
        assert {(m.e164, m.user_id) for m in result.matches} == EXPECTED
        assert [r.raw for r in result.rejected] == ["911"]

    return session


def refused(session: Callable[[str], None]) -> Callable[[str], None]:
    """``session``, which the server must refuse with INVALID_ARGUMENT (after the bytes left)."""

    def expect_refusal(target: str) -> None:
        with pytest.raises(onnet.InvalidArgumentError):
            session(target)

    return expect_refusal


@dataclass
class Call:
    """One HTTP/2 stream the client opened: its headers and its request body."""

    connection: int
    stream_id: int
    headers: list[tuple[bytes, bytes]]
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False

    @property
    def path(self) -> str:
        return dict(self.headers).get(b":path", b"").decode("ascii", "replace")

    @property
    def where(self) -> str:
        return f"connection {self.connection} stream {self.stream_id} ({self.path})"


@dataclass
class WireReport:
    """What the inspector read, and every way the bytes broke P6."""

    calls: list[Call] = field(default_factory=list)
    blinded: list[bytes] = field(default_factory=list)
    buckets: list[int] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


# HTTP/2 connection management: these frames carry no application bytes (and the raw scan
# covers their bytes anyway).
_HOUSEKEEPING = (
    h2.events.RemoteSettingsChanged,
    h2.events.SettingsAcknowledged,
    h2.events.PingReceived,
    h2.events.PingAckReceived,
    h2.events.WindowUpdated,
    h2.events.PriorityUpdated,
    h2.events.StreamReset,
    h2.events.ConnectionTerminated,
)


def decode_http2(index: int, raw: bytes, report: WireReport) -> None:
    """Read one connection's client-to-server bytes as the server side of HTTP/2 would."""
    connection = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    connection.initiate_connection()
    # Whatever the real server let the client use (windows, frame and header-table sizes),
    # this reader accepts too: it takes effect when the client acknowledges the real
    # server's settings, as the client's own use of them does.
    codes = h2.settings.SettingCodes
    connection.update_settings(
        {
            codes.INITIAL_WINDOW_SIZE: 2**31 - 1,
            codes.MAX_FRAME_SIZE: 2**24 - 1,
            codes.HEADER_TABLE_SIZE: 2**16,
        }
    )
    streams: dict[int, Call] = {}
    try:
        for start in range(0, len(raw), 4096):
            for event in connection.receive_data(raw[start : start + 4096]):
                if isinstance(event, h2.events.RequestReceived):
                    call = Call(index, event.stream_id or 0, list(event.headers or []))
                    streams[call.stream_id] = call
                    report.calls.append(call)
                elif isinstance(event, h2.events.DataReceived):
                    stream_id = event.stream_id or 0
                    streams[stream_id].body += event.data or b""
                    size = event.flow_controlled_length or 0
                    connection.acknowledge_received_data(size, stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    streams[event.stream_id or 0].ended = True
                elif not isinstance(event, _HOUSEKEEPING):
                    report.violations.append(f"connection {index}: unexpected {event!r}")
            connection.data_to_send()  # this reader's own frames go nowhere
    except h2.exceptions.H2Error as error:
        report.violations.append(f"connection {index}: not HTTP/2 from a client: {error!r}")


def grpc_messages(call: Call, report: WireReport) -> list[bytes]:
    """The gRPC messages of a request body: 1-byte flag, 4-byte length, message."""
    body, offset, messages = bytes(call.body), 0, []
    if not call.ended:
        report.violations.append(f"{call.where}: the request never ended")
    while offset < len(body):
        prefix, offset = body[offset : offset + 5], offset + 5
        length = int.from_bytes(prefix[1:], "big")
        message, offset = body[offset : offset + length], offset + length
        if len(prefix) < 5 or len(message) != length:
            report.violations.append(f"{call.where}: a truncated gRPC message")
            break
        if prefix[0] != 0:
            report.violations.append(f"{call.where}: a compressed message the scan cannot read")
        messages.append(message)
    return messages


def check_blind_evaluate(call: Call, message: bytes, world: World, report: WireReport) -> None:
    """Only N canonical elements, none the contact's hash or its unblinded element."""
    request = discovery_pb2.BlindEvaluateRequest.FromString(message)
    elements = request.blinded_elements
    rebuilt = discovery_pb2.BlindEvaluateRequest(blinded_elements=elements)
    if rebuilt.SerializeToString() != message:
        report.violations.append(f"{call.where}: more than blinded_elements")
    if not elements or len(elements) % _ELEMENT:
        report.violations.append(f"{call.where}: {len(elements)} bytes are not whole elements")
    for start in range(0, len(elements) - _ELEMENT + 1, _ELEMENT):
        element = elements[start : start + _ELEMENT]
        report.blinded.append(element)
        try:
            oprf.check_element(element)
        except oprf.OprfError:
            report.violations.append(f"{call.where}: element {element.hex()} is not canonical")
        for item in world.secrets:
            e164 = item.contact.e164
            if element[:_WINDOW] == item.contact_hash[:_WINDOW]:
                report.violations.append(f"{call.where}: the contact hash of {e164} as element")
            if element == item.element:
                report.violations.append(f"{call.where}: HashToGroup({e164}) sent unblinded")


def check_fetch_buckets(call: Call, message: bytes, world: World, report: WireReport) -> None:
    """Only bucket numbers, each with no more bits than GetConfig announced."""
    request = discovery_pb2.FetchBucketsRequest.FromString(message)
    bits = request.prefix_bits
    rebuilt = discovery_pb2.FetchBucketsRequest(prefix_bits=bits, buckets=request.buckets)
    if rebuilt.SerializeToString() != message:
        report.violations.append(f"{call.where}: more than prefix_bits and buckets")
    if bits > world.bits:
        report.violations.append(f"{call.where}: {bits}-bit buckets, {world.bits} announced")
    for bucket in request.buckets:
        report.buckets.append(bucket)
        if bucket >> min(bits, world.bits):
            report.violations.append(
                f"{call.where}: bucket {bucket} is not below 2^{min(bits, world.bits)}"
            )


def check_call(call: Call, world: World, report: WireReport) -> None:
    """Method, headers and the one request message of a call."""
    if call.path not in PRIVATE_METHODS:
        report.violations.append(f"{call.where}: calls {call.path}, not a private-mode method")
    for name, value in call.headers:
        text = name.decode("ascii", "replace")
        if text not in ALLOWED_HEADERS:
            report.violations.append(f"{call.where}: sends a {text!r} header")
        elif text == "authorization" and value != world.authorization.encode():
            report.violations.append(f"{call.where}: an authorization other than its token")
    messages = grpc_messages(call, report)
    if len(messages) != 1:
        report.violations.append(f"{call.where}: {len(messages)} messages in a unary call")
    checks = {BLIND_EVALUATE: check_blind_evaluate, FETCH_BUCKETS: check_fetch_buckets}
    for message in messages:
        try:
            if call.path == GET_CONFIG and message:
                report.violations.append(f"{call.where}: a GetConfig request that is not empty")
            elif call.path in checks:
                checks[call.path](call, message, world, report)
        except DecodeError:
            report.violations.append(f"{call.where}: a request that is not its message type")


def _windows(secret: bytes) -> Iterator[bytes]:
    return (secret[i : i + _WINDOW] for i in range(len(secret) - _WINDOW + 1))


def forbidden(world: World) -> list[tuple[bytes, str]]:
    """(bytes, what they are) for everything that must never leave a private-mode client."""
    # A prefix of T of any length longer than the announced bits breaks P6, but a needle of
    # one to three bytes turns up in random bytes by chance. The scan looks for 4-byte (32-bit,
    # more than the 24 bits a server ever announces) prefixes; the FetchBuckets check holds
    # bucket numbers to the announced bits exactly.
    prefix = max(4, world.bits // 8 + 1)
    needles: list[tuple[bytes, str]] = []
    for item in world.secrets:
        e164 = item.contact.e164
        national = str(phonenumbers.parse(e164).national_number)
        for text in dict.fromkeys([e164, e164[1:], national, *item.contact.spellings]):
            needles.append((text.encode("ascii"), f"{e164} as the text {text!r}"))
        needles += [(piece, f"the contact hash of {e164}") for piece in _windows(item.contact_hash)]
        needles.append((item.output[:prefix], f"a {8 * prefix}-bit prefix of OPRF({e164})"))
        needles += [(piece, f"the OPRF output of {e164}") for piece in _windows(item.output)]
        needles += [(piece, f"HashToGroup({e164})") for piece in _windows(item.element)]
        unblinded = f"the unblinded evaluation of {e164}"
        needles += [(piece, unblinded) for piece in _windows(item.evaluated)]
    return needles


def inspect(sent: list[bytes], world: World) -> WireReport:
    """Decode and check everything a client sent, then scan it for identifying bytes."""
    report = WireReport()
    for index, raw in enumerate(sent):
        decode_http2(index, raw, report)
    for call in report.calls:
        check_call(call, world, report)
    places = [(f"connection {i} raw bytes", raw) for i, raw in enumerate(sent)]
    for call in report.calls:
        headers = b"\n".join(name + b": " + value for name, value in call.headers)
        places += [(f"{call.where} headers", headers), (f"{call.where} body", bytes(call.body))]
    found = {
        f"{place}: {what}"  # one line per secret and place, not per 16-byte piece
        for needle, what in forbidden(world)
        for place, data in places
        if needle in data
    }
    report.violations += sorted(found)
    return report


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_private_discovery_sends_only_blinded_elements_and_bucket_numbers(
    world: World, kind: str
) -> None:
    blinded_per_run: list[list[bytes]] = []
    for _ in range(2):  # two fresh clients: nothing cached, so both blind every number
        report = inspect(record(world.target, discover(world, kind=kind)), world)
        assert not report.violations, "\n".join(report.violations)
        paths = {call.path for call in report.calls}
        assert paths <= PRIVATE_METHODS
        assert {BLIND_EVALUATE, FETCH_BUCKETS} <= paths
        assert len(report.blinded) == len(set(report.blinded)) == len(CONTACTS)
        assert report.buckets
        blinded_per_run.append(report.blinded)
    first, second = (set(run) for run in blinded_per_run)
    assert not first & second  # fresh blinds: a re-sync does not repeat its elements


@pytest.mark.parametrize("mutant", ["private mode off", "unblinded elements", "wide buckets"])
def test_the_inspector_reports_a_leaking_client(
    world: World, mutant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if mutant == "private mode off":
        # The security review's mutation: the SDK skips its private branch and uploads
        # contact hashes, which finds the same matches.
        session = discover(world, private=False)
        expected = ["calls /onnet.v1.Discovery/Discover", "the contact hash of +14155550100"]
    elif mutant == "unblinded elements":  # a blind of 1: deterministic, dictionary-testable
        monkeypatch.setattr(
            oprf,
            "blind",
            lambda message, mode=oprf.Mode.OPRF: oprf._blind_with(message, _ONE, mode),
        )
        session = discover(world)
        expected = ["HashToGroup(+14155550100) sent unblinded"]
    else:  # all 32 bits of each output's prefix as the bucket numbers

        def wide(plan: PrivatePlan, bits: int, max_batch: int) -> list[list[int]]:
            return [[buckets.prefix_of(output) for output in plan.outputs.values()]]

        monkeypatch.setattr(PrivatePlan, "bucket_requests", wide)
        session = refused(discover(world))
        expected = ["is not below 2^"]
    report = inspect(record(world.target, session), world)
    for phrase in expected:
        assert any(phrase in violation for violation in report.violations), report.violations
