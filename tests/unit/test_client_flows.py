"""One flow, two drivers: the blocking and the asyncio SDK send the same calls, and agree.

Each flow holds logic without I/O (onnet._flow). Here both drivers run it against one fake
server, a function from a call to its answer (no gRPC, no network), and must send the same
requests in the same order and end with the same result and the same sync state.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.message import Message

import onnet
from onnet import _rpc
from onnet._config import ServerConfig
from onnet._flow import run, run_async
from onnet._hashed import discover_hashed
from onnet._plan import DiscoveryPlan
from onnet._private import discover_private
from onnet._retry import Attempt, RetryPolicy, attempts
from onnet._rpc import Call, Rpc
from onnet.protocol import buckets, oprf
from onnet.v1 import discovery_pb2

Result = TypeVar("Result")
Calls = list[tuple[str, Message]]

USERS = {
    "+14155550100": "alice",
    "+442079460958": "charles",
    "+16502530000": "grace",
    "+4930901820": "emmy",
}
BOOK = [
    "(415) 555-0100",
    "+44 20 7946 0958",
    "+1 415 555 0100",  # alice again: uploaded once
    "555-0199",  # rejected: no area code
    "(212) 555-0134",
    "+1 650 253 0000",
    "(312) 555-0177",
    "(617) 555-0121",
    "(206) 555-0148",
]
SECRET, _ = oprf.derive_key_pair(bytes(32), b"onnet test server", oprf.Mode.OPRF)
BITS = 2
CONFIG = discovery_pb2.DiscoveryConfig(
    contact_hash_version=onnet.CONTACT_HASH_VERSION,
    max_batch=2,
    max_message_bytes=1 << 20,
    quota_remaining=1_000,
    oprf_suite=oprf.SUITE,
    oprf_key_id="k1",
    bucket_prefix_bits=BITS,
    max_buckets=2,
    max_previous=8,
)


def _entries() -> dict[int, list[bytes]]:
    """Each bucket's entries, sealed once so that every run is answered alike."""
    entries: dict[int, list[bytes]] = {}
    for e164, user_id in sorted(USERS.items()):
        output = oprf.evaluate(SECRET, e164.encode("ascii"))
        entries.setdefault(buckets.bucket_of(output, BITS), []).append(
            buckets.seal_entry(output, user_id)
        )
    return entries


ENTRIES = _entries()
BY_HASH = {onnet.contact_hash(e164): user_id for e164, user_id in USERS.items()}


class FakeServer:
    """A Discovery server as a function of each call, which it records."""

    def __init__(self, *, refused: frozenset[bytes] = frozenset()) -> None:
        self.refused = refused
        """Re-sync tokens it no longer accepts (retired, expired)."""
        self.calls: Calls = []

    def __call__(self, call: Call) -> Message:
        self.calls.append((call.rpc.method, call.message))
        answer: Callable[[Any], Message] = getattr(self, call.rpc.method)
        return answer(call.message)

    def get_config(self, _: discovery_pb2.GetConfigRequest) -> discovery_pb2.DiscoveryConfig:
        return CONFIG

    def discover(self, request: discovery_pb2.DiscoverRequest) -> discovery_pb2.DiscoverResponse:
        if request.token in self.refused:
            raise onnet.InvalidArgumentError(grpc.StatusCode.INVALID_ARGUMENT, "expired", "token")
        hashes = [request.hashes[i : i + 32] for i in range(0, len(request.hashes), 32)]
        matched = [(i, BY_HASH[h]) for i, h in enumerate(hashes) if h in BY_HASH]
        return discovery_pb2.DiscoverResponse(
            matched_indexes=[i for i, _ in matched],
            user_ids=[user_id for _, user_id in matched],
            token=b"token:" + hashlib.sha256(request.hashes).digest()[:8],
        )

    def blind_evaluate(
        self, request: discovery_pb2.BlindEvaluateRequest
    ) -> discovery_pb2.BlindEvaluateResponse:
        blinded = request.blinded_elements
        evaluated = b"".join(
            oprf.blind_evaluate(SECRET, blinded[i : i + 32]) for i in range(0, len(blinded), 32)
        )
        return discovery_pb2.BlindEvaluateResponse(evaluated_elements=evaluated, key_id="k1")

    def fetch_buckets(
        self, request: discovery_pb2.FetchBucketsRequest
    ) -> discovery_pb2.FetchBucketsResponse:
        assert request.prefix_bits == BITS
        return discovery_pb2.FetchBucketsResponse(
            buckets=[
                discovery_pb2.Bucket(bucket=b, entries=ENTRIES.get(b, [])) for b in request.buckets
            ]
        )


Driver = Callable[[Generator[Call, Any, Any], FakeServer], Any]


def blocking(flow: Generator[Call, Any, Result], server: FakeServer) -> Result:
    return run(flow, server)


def awaited(flow: Generator[Call, Any, Result], server: FakeServer) -> Result:
    async def perform(call: Call) -> Message:
        await asyncio.sleep(0)  # the answer comes after a real suspension
        return server(call)

    return asyncio.run(run_async(flow, perform))


@pytest.fixture(autouse=True)
def fixed_blinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blinds drawn from the number, not at random, so that two runs send the same bytes."""

    def blind(message: bytes, mode: oprf.Mode = oprf.Mode.OPRF) -> tuple[bytes, bytes]:
        scalar, _ = oprf.derive_key_pair(hashlib.sha256(message).digest(), b"blind", mode)
        return oprf._blind_with(message, scalar, mode)

    monkeypatch.setattr(oprf, "blind", blind)


def hashed_syncs(drive: Driver) -> tuple[Calls, list[onnet.DiscoveryResult], bytes]:
    """A first sync, then a re-sync against a server that retired one part's token."""
    state = onnet.SyncState()
    config = ServerConfig.from_proto(CONFIG)
    first_server = FakeServer()
    first = drive(discover_hashed(DiscoveryPlan(BOOK, "US"), config, state), first_server)
    retired = FakeServer(refused=frozenset([min(state.tokens().values())]))
    again = drive(discover_hashed(DiscoveryPlan(BOOK, "US"), config, state), retired)
    return first_server.calls + retired.calls, [first, again], state.to_bytes()


def private_syncs(drive: Driver) -> tuple[Calls, list[onnet.DiscoveryResult], bytes]:
    """A first private sync, then a re-sync of the same book."""
    state = onnet.SyncState()
    server = FakeServer()
    results = [drive(discover_private(DiscoveryPlan(BOOK, "US"), state), server) for _ in range(2)]
    return server.calls, results, state.to_bytes()


@pytest.mark.parametrize("syncs", [hashed_syncs, private_syncs])
def test_both_drivers_send_the_same_calls_and_agree(
    syncs: Callable[[Driver], tuple[Calls, list[onnet.DiscoveryResult], bytes]],
) -> None:
    calls, results, state = syncs(blocking)
    assert syncs(awaited) == (calls, results, state)
    for result in results:
        assert sorted({(m.user_id, m.e164) for m in result.matches}) == [
            ("alice", "+14155550100"),
            ("charles", "+442079460958"),
            ("grace", "+16502530000"),
        ]
        assert [r.raw for r in result.rejected] == ["555-0199"]
    assert results[0].charged == results[0].uploaded == 7


def test_a_refused_token_is_dropped_and_its_part_sent_again_without_it() -> None:
    state = onnet.SyncState()
    config = ServerConfig.from_proto(CONFIG)
    blocking(discover_hashed(DiscoveryPlan(BOOK, "US"), config, state), FakeServer())
    parts, retired = len(state.tokens()), min(state.tokens().values())
    server = FakeServer(refused=frozenset([retired]))
    again = blocking(discover_hashed(DiscoveryPlan(BOOK, "US"), config, state), server)
    sent = [m for _, m in server.calls if isinstance(m, discovery_pb2.DiscoverRequest)]
    assert len(sent) == len(server.calls) == parts + 1
    [refused] = [m for m in sent if m.token == retired]
    [without] = [m for m in sent if not m.token]
    assert sent.index(without) == sent.index(refused) + 1
    assert without.hashes == refused.hashes
    assert again.charged == len(without.hashes) // 32  # only that part paid again
    assert len(state.tokens()) == parts  # and it has a token again


def test_a_private_resync_evaluates_nothing_new() -> None:
    calls, (first, again), _ = private_syncs(blocking)
    evaluated = [m for _, m in calls if isinstance(m, discovery_pb2.BlindEvaluateRequest)]
    assert sum(len(m.blinded_elements) for m in evaluated) == 32 * 7  # the first sync's only
    assert (first.charged, again.charged) == (7, 0)


class _Layer:
    """A calls layer over a fake server: blocking, or (``awaited``) asyncio."""

    def __init__(self, server: FakeServer, *, awaited: bool) -> None:
        self._server = server
        self._awaited = awaited

    def __getattr__(self, method: str) -> Callable[[Message], Any]:
        def call(message: Message) -> Any:
            answer = self._server(Call(Rpc(method), message))
            return asyncio.sleep(0, answer) if self._awaited else answer

        return call


def test_client_and_async_client_send_the_same_calls() -> None:
    """The public clients over the same fake calls layer: config kept, modes alike."""
    blocking_server, asyncio_server = FakeServer(), FakeServer()
    with onnet.Client("127.0.0.1:9") as client:  # the channel is never used
        client.calls = _Layer(blocking_server, awaited=False)  # type: ignore[assignment]
        expected = [client.discover(BOOK, "US"), client.discover(BOOK, "US", private=True)]
        expected_quota = client.quota_remaining()

    async def main() -> tuple[list[onnet.DiscoveryResult], int | None]:
        async with onnet.AsyncClient("127.0.0.1:9") as client:
            client.calls = _Layer(asyncio_server, awaited=True)  # type: ignore[assignment]
            results = [
                await client.discover(BOOK, "US"),
                await client.discover(BOOK, "US", private=True),
            ]
            return results, await client.quota_remaining()

    assert asyncio.run(main()) == (expected, expected_quota)
    assert asyncio_server.calls == blocking_server.calls
    # Kept for hashed syncs; private mode and the quota ask afresh.
    assert [method for method, _ in blocking_server.calls].count("get_config") == 3


class Status(grpc.RpcError):
    """A failed call's error, as grpc raises it."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def outcome(go: Callable[[], str]) -> str:
    try:
        return go()
    except onnet.ServiceError as error:
        return type(error).__name__


def tries(failures: list[grpc.StatusCode], *, awaited: bool) -> tuple[str, list[Attempt]]:
    """Run a call's tries: each fails with the next of ``failures``, then one answers."""
    seen: list[Attempt] = []
    policy = RetryPolicy(attempts=4, initial_backoff=0.0)

    def attempt(step: Attempt) -> str:
        seen.append(step)
        if failures:
            raise Status(failures.pop(0))
        return "answer"

    async def attempt_async(step: Attempt) -> str:
        return attempt(step)

    flow: Generator[Attempt, str, str] = attempts(policy)
    if awaited:
        return outcome(lambda: asyncio.run(run_async(flow, attempt_async))), seen
    return outcome(lambda: run(flow, attempt)), seen


UNAVAILABLE, NOT_FOUND = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("failures", "expected", "backoffs"),
    [
        ([], "answer", [None]),
        ([UNAVAILABLE] * 2, "answer", [None, 0.0, 0.0]),
        ([NOT_FOUND], "NotFoundError", [None]),  # a refusal is not retried
        ([UNAVAILABLE] * 4, "UnavailableError", [None, 0.0, 0.0, 0.0]),
    ],
)
def test_the_tries_of_a_call_are_the_same_in_both_drivers(
    failures: list[grpc.StatusCode], expected: str, backoffs: list[float | None]
) -> None:
    answer, seen = tries(list(failures), awaited=False)
    assert tries(list(failures), awaited=True) == (answer, seen)
    assert answer == expected
    assert [step.backoff for step in seen] == backoffs
    assert [step.wait_for_ready for step in seen] == [b is not None for b in backoffs]


def test_every_rpc_a_flow_names_is_in_both_calls_layers() -> None:
    rpcs = [value for value in vars(_rpc).values() if isinstance(value, Rpc)]
    assert len(rpcs) == 10  # every unary RPC of both services
    layers = [
        (onnet.DiscoveryCalls, onnet.AsyncDiscoveryCalls),
        (onnet.RegistryCalls, onnet.AsyncRegistryCalls),
    ]
    for rpc in rpcs:
        served = [all(hasattr(layer, rpc.method) for layer in pair) for pair in layers]
        assert served.count(True) == 1, rpc


def test_the_backoff_grows_to_its_cap_with_full_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each wait is drawn below a ceiling that doubles from initial_backoff up to max_backoff."""
    ceilings: list[float] = []

    def highest(low: float, high: float) -> float:
        ceilings.append(high)
        assert low == 0  # full jitter: anywhere from no wait at all
        return high

    monkeypatch.setattr("onnet._retry.random.uniform", highest)
    policy = RetryPolicy(attempts=5, initial_backoff=0.1, max_backoff=0.3, multiplier=2.0)
    assert [policy.backoff(retry) for retry in range(4)] == [0.1, 0.2, 0.3, 0.3]
    assert ceilings == [0.1, 0.2, 0.3, 0.3]


def test_a_deadline_after_unavailable_reports_the_server_unavailable() -> None:
    """A retry that waited out its deadline for a server that was down says it was down."""
    for awaited in (False, True):
        answer, seen = tries([UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED], awaited=awaited)
        assert (answer, len(seen)) == ("UnavailableError", 2)
    answer, _ = tries([grpc.StatusCode.DEADLINE_EXCEEDED], awaited=False)
    assert answer == "DeadlineExceededError"  # with no server down before it, as it is


class RefusingField(FakeServer):
    """Refuses a re-sync with a token for another field than the token (a client's bug)."""

    def discover(self, request: discovery_pb2.DiscoverRequest) -> discovery_pb2.DiscoverResponse:
        if request.token:
            raise onnet.InvalidArgumentError(
                grpc.StatusCode.INVALID_ARGUMENT, "holds a hash more than once", "added_hashes"
            )
        return super().discover(request)


def test_only_a_refused_token_is_paid_again_other_refusals_surface() -> None:
    state = onnet.SyncState()
    config = ServerConfig.from_proto(CONFIG)
    blocking(discover_hashed(DiscoveryPlan(BOOK, "US"), config, state), FakeServer())
    server = RefusingField()
    with pytest.raises(onnet.InvalidArgumentError) as refused:
        blocking(discover_hashed(DiscoveryPlan(BOOK, "US"), config, state), server)
    assert refused.value.field == "added_hashes"
    assert len(server.calls) == 1  # not sent again without its token: nothing paid twice


def test_an_older_server_without_max_previous_still_resyncs_for_free() -> None:
    """A server that does not announce max_previous allows what fits beside a full batch;
    the SDK derives it rather than sending parts without their tokens."""
    older = discovery_pb2.DiscoveryConfig()
    older.CopyFrom(CONFIG)
    older.ClearField("max_previous")
    config = ServerConfig.from_proto(older)
    assert config.max_previous == 0
    assert config.previous_limit == ((1 << 20) - 1024) // 32 - config.max_batch
    synced = onnet.SyncState()
    blocking(discover_hashed(DiscoveryPlan(BOOK, "US"), config, synced), FakeServer())
    for gone in BOOK:  # each number removed in turn: its part proves the removal, for free
        state = onnet.SyncState.from_bytes(synced.to_bytes())
        fewer = DiscoveryPlan([entry for entry in BOOK if entry != gone], "US")
        assert blocking(discover_hashed(fewer, config, state), FakeServer()).charged == 0
