"""Micro benchmarks of the steps a sync is made of, each against a floor in the same run.

Every step is measured next to a ceiling that does the least work it could not avoid, timed
in the same run, so that a slow or busy machine moves both sides together:

- normalize (national number with a region; E.164 string): ``phonenumbers.parse`` alone;
- contact_hash: a bare ``hashlib.sha256`` of the same bytes;
- fingerprints of 1,000 hashes: one raw AES-256-ECB call over the same 16 KB of prefixes;
- index lookup of 1,000 fingerprints (a tenth registered) in a MemoryRegistry of N users: a
  Python ``set`` of the same N fingerprints asked about the same 1,000 ``bytes`` keys;
- DiscoverRequest (1,000 hashes) and DiscoverResponse (10 matches) encode and decode: a bare
  copy of as many bytes as the encoded message (memory bandwidth and call overhead);
- OPRF blind, finalize, blind_evaluate and evaluate, per element: raw libsodium (one scalar
  multiplication, plus hashing a uniform string to the group where the step does that);
- re-sync token renew (1,000 hashes, 1,000 previous): the fingerprints of the same 2,000.

In the suite (benchmarks disabled) every body runs once at a small size and its result is
checked. ``make bench`` (ONNET_BENCH_USERS set, ``--benchmark-enable``) times them, with
ONNET_BENCH_USERS registered users, and ``test_report`` prints time per op, ops/s and the
ratio (step's rate / ceiling's rate). Results go in bench/README.md.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import phonenumbers
import pysodium
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pytest_benchmark.fixture import BenchmarkFixture

import onnet
from onnet.protocol import oprf
from onnet.v1 import discovery_pb2
from onnet_server.core.fingerprint import FINGERPRINT_SIZE, Fingerprinter
from onnet_server.core.resync import ResyncTokens
from onnet_server.stores.memory import MemoryRegistry

FULL = bool(os.environ.get("ONNET_BENCH_USERS"))
USERS = int(os.environ.get("ONNET_BENCH_USERS") or 1_000)
BATCH = 1_000  # contact hashes in a Discover batch
HITS = BATCH // 10  # a tenth of an address book is on the network
MATCHES = 10  # matches in the DiscoverResponse
ELEMENTS = 100 if FULL else 20  # OPRF elements a round (~10 ms: many rounds, steady median)
PREVIOUS = 1_000  # previous hashes a re-sync carries
NEW = 100  # hashes of the re-sync not among the previous ones

NATIONAL, REGION, NATIONAL_E164 = "(415) 555-0132", "US", "+14155550132"
E164 = "+442079460958"
CONTACT_HASH_DOMAIN = b"onnet/contact/v1:"  # CONTACT_HASH_VERSION 1

T = TypeVar("T")
RESULTS: dict[str, float] = {}
"""Median seconds of one call of each measured body (only when benchmarks ran)."""


def measure(benchmark: BenchmarkFixture, name: str, run: Callable[[], T]) -> T:
    """Run ``run`` under ``benchmark`` and keep its median when it was timed."""
    result: T = benchmark(run)
    if benchmark.stats is not None:
        RESULTS[name] = benchmark.stats.stats.median
    return result


def copy(data: bytes) -> bytearray:
    """A new buffer with the contents of ``data``: one allocation and one memcpy."""
    return bytearray(data)


# -- inputs -----------------------------------------------------------------------------------


@dataclass
class Lookup:
    registry: MemoryRegistry
    registered: set[bytes]
    queries: bytes
    query_items: list[bytes]
    expected_indexes: list[int]
    expected_users: list[str]


@pytest.fixture(scope="module")
def lookup() -> Lookup:
    rng = np.random.default_rng(2026)
    fingerprints = rng.bytes(FINGERPRINT_SIZE * (USERS + BATCH - HITS))
    items = [fingerprints[i : i + FINGERPRINT_SIZE] for i in range(0, len(fingerprints), 16)]
    registry = MemoryRegistry()
    for i in range(USERS):
        registry.register_now(f"user-{i:07d}", items[i], True)
    chosen = [int(i) for i in rng.choice(USERS, size=HITS, replace=False)]
    queries = [items[i] for i in chosen] + items[USERS:]
    order = [int(i) for i in rng.permutation(BATCH)]
    query_items = [queries[i] for i in order]
    expected = sorted(
        (position, f"user-{chosen[source]:07d}")
        for position, source in enumerate(order)
        if source < HITS
    )
    return Lookup(
        registry,
        set(items[:USERS]),
        b"".join(query_items),
        query_items,
        [position for position, _ in expected],
        [user for _, user in expected],
    )


@dataclass
class Hashes:
    fingerprinter: Fingerprinter
    cipher: Cipher[modes.ECB]
    batch: bytes  # BATCH packed contact hashes
    prefixes: bytes  # their first 16 bytes each


@pytest.fixture(scope="module")
def hashes() -> Hashes:
    pepper = secrets.token_bytes(32)
    batch = b"".join(onnet.contact_hash(f"+1202{i:07d}") for i in range(BATCH))
    prefixes = b"".join(batch[i : i + FINGERPRINT_SIZE] for i in range(0, len(batch), 32))
    cipher = Cipher(algorithms.AES(pepper), modes.ECB())  # the raw call, as Fingerprinter
    return Hashes(Fingerprinter(pepper), cipher, batch, prefixes)


@dataclass
class Oprf:
    secret: bytes
    messages: list[bytes]
    blinds: list[bytes]
    blinded: list[bytes]
    evaluated: list[bytes]
    uniforms: list[bytes]  # 64 uniform bytes per message, for the raw hash-to-group
    outputs: list[bytes]  # evaluate(secret, message), what finalize must arrive at


@pytest.fixture(scope="module")
def oprf_inputs() -> Oprf:
    secret, _ = oprf.derive_key_pair(bytes(32), b"bench", oprf.Mode.OPRF)
    messages = [f"+1415555{i:04d}".encode() for i in range(ELEMENTS)]
    pairs = [oprf.blind(message) for message in messages]
    blinded = [element for _, element in pairs]
    return Oprf(
        secret,
        messages,
        [blind for blind, _ in pairs],
        blinded,
        [oprf.blind_evaluate(secret, element) for element in blinded],
        [hashlib.sha512(message).digest() for message in messages],
        [oprf.evaluate(secret, message) for message in messages],
    )


def discover_request() -> discovery_pb2.DiscoverRequest:
    return discovery_pb2.DiscoverRequest(hashes=os.urandom(32 * BATCH))


def discover_response() -> discovery_pb2.DiscoverResponse:
    return discovery_pb2.DiscoverResponse(
        matched_indexes=[97 * i + 3 for i in range(MATCHES)],
        user_ids=[f"user-{1_000_003 * i % 10_000_000:07d}" for i in range(MATCHES)],
        token=os.urandom(45),
    )


# -- normalize --------------------------------------------------------------------------------


def test_normalize_national(benchmark: BenchmarkFixture) -> None:
    e164 = measure(benchmark, "normalize_national", lambda: onnet.normalize(NATIONAL, REGION))
    assert e164 == NATIONAL_E164


def test_parse_national_ceiling(benchmark: BenchmarkFixture) -> None:
    number = measure(benchmark, "parse_national", lambda: phonenumbers.parse(NATIONAL, REGION))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    assert e164 == NATIONAL_E164


def test_normalize_e164(benchmark: BenchmarkFixture) -> None:
    assert measure(benchmark, "normalize_e164", lambda: onnet.normalize(E164)) == E164


def test_parse_e164_ceiling(benchmark: BenchmarkFixture) -> None:
    number = measure(benchmark, "parse_e164", lambda: phonenumbers.parse(E164, None))
    assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == E164


# -- contact_hash -----------------------------------------------------------------------------


def test_contact_hash(benchmark: BenchmarkFixture) -> None:
    digest = measure(benchmark, "contact_hash", lambda: onnet.contact_hash(E164))
    assert digest == hashlib.sha256(CONTACT_HASH_DOMAIN + E164.encode()).digest()


def test_sha256_ceiling(benchmark: BenchmarkFixture) -> None:
    data = CONTACT_HASH_DOMAIN + E164.encode()
    digest = measure(benchmark, "sha256", lambda: hashlib.sha256(data).digest())
    assert digest == onnet.contact_hash(E164)


# -- fingerprints -----------------------------------------------------------------------------


def test_fingerprints(benchmark: BenchmarkFixture, hashes: Hashes) -> None:
    fingerprints = measure(
        benchmark, "fingerprints", lambda: hashes.fingerprinter.fingerprints(hashes.batch)
    )
    assert len(fingerprints) == FINGERPRINT_SIZE * BATCH
    assert fingerprints[16:32] == hashes.fingerprinter.fingerprint(hashes.batch[32:64])


def test_raw_aes_ceiling(benchmark: BenchmarkFixture, hashes: Hashes) -> None:
    def run() -> bytes:
        encryptor = hashes.cipher.encryptor()
        return encryptor.update(hashes.prefixes) + encryptor.finalize()

    assert measure(benchmark, "raw_aes", run) == hashes.fingerprinter.fingerprints(hashes.batch)


# -- index lookup -----------------------------------------------------------------------------


def test_index_lookup(benchmark: BenchmarkFixture, lookup: Lookup) -> None:
    matches = measure(benchmark, "lookup", lambda: lookup.registry.match(lookup.queries))
    assert matches.indexes.tolist() == lookup.expected_indexes
    assert matches.user_ids == lookup.expected_users


def test_set_ceiling(benchmark: BenchmarkFixture, lookup: Lookup) -> None:
    def run() -> list[int]:
        registered = lookup.registered
        return [i for i, item in enumerate(lookup.query_items) if item in registered]

    assert measure(benchmark, "set", run) == lookup.expected_indexes


# -- request and response messages ------------------------------------------------------------


def test_request_encode(benchmark: BenchmarkFixture) -> None:
    request = discover_request()
    encoded = measure(benchmark, "request_encode", request.SerializeToString)
    assert len(encoded) > 32 * BATCH
    assert discovery_pb2.DiscoverRequest.FromString(encoded) == request


def test_request_decode(benchmark: BenchmarkFixture) -> None:
    request = discover_request()
    encoded = request.SerializeToString()
    decoded = measure(
        benchmark, "request_decode", lambda: discovery_pb2.DiscoverRequest.FromString(encoded)
    )
    assert decoded.hashes == request.hashes


def test_request_copy_ceiling(benchmark: BenchmarkFixture) -> None:
    encoded = discover_request().SerializeToString()
    copied = measure(benchmark, "request_copy", lambda: copy(encoded))
    assert copied == encoded
    assert copied is not encoded


def test_response_encode(benchmark: BenchmarkFixture) -> None:
    response = discover_response()
    encoded = measure(benchmark, "response_encode", response.SerializeToString)
    assert discovery_pb2.DiscoverResponse.FromString(encoded) == response


def test_response_decode(benchmark: BenchmarkFixture) -> None:
    response = discover_response()
    encoded = response.SerializeToString()
    decoded = measure(
        benchmark, "response_decode", lambda: discovery_pb2.DiscoverResponse.FromString(encoded)
    )
    assert list(decoded.matched_indexes) == list(response.matched_indexes)
    assert list(decoded.user_ids) == list(response.user_ids)


def test_response_copy_ceiling(benchmark: BenchmarkFixture) -> None:
    encoded = discover_response().SerializeToString()
    copied = measure(benchmark, "response_copy", lambda: copy(encoded))
    assert copied == encoded
    assert copied is not encoded


# -- OPRF -------------------------------------------------------------------------------------


def test_oprf_blind(benchmark: BenchmarkFixture, oprf_inputs: Oprf) -> None:
    def run() -> list[tuple[bytes, bytes]]:
        return [oprf.blind(message) for message in oprf_inputs.messages]

    pairs = measure(benchmark, "blind", run)
    for message, (blind, element), output in zip(
        oprf_inputs.messages, pairs, oprf_inputs.outputs, strict=True
    ):
        evaluated = oprf.blind_evaluate(oprf_inputs.secret, element)
        assert oprf.finalize(message, blind, evaluated) == output


def test_raw_hash_to_group_and_mul_ceiling(benchmark: BenchmarkFixture, oprf_inputs: Oprf) -> None:
    def run() -> list[bytes]:
        secret = oprf_inputs.secret
        return [
            pysodium.crypto_scalarmult_ristretto255(
                secret, pysodium.crypto_core_ristretto255_from_hash(uniform)
            )
            for uniform in oprf_inputs.uniforms
        ]

    results = measure(benchmark, "raw_h2g_mul", run)
    assert len(results) == ELEMENTS
    assert all(pysodium.crypto_core_ristretto255_is_valid_point(r) for r in results)


def test_oprf_evaluate(benchmark: BenchmarkFixture, oprf_inputs: Oprf) -> None:
    def run() -> list[bytes]:
        return [oprf.evaluate(oprf_inputs.secret, message) for message in oprf_inputs.messages]

    assert measure(benchmark, "evaluate", run) == oprf_inputs.outputs


def test_oprf_blind_evaluate(benchmark: BenchmarkFixture, oprf_inputs: Oprf) -> None:
    def run() -> list[bytes]:
        return [oprf.blind_evaluate(oprf_inputs.secret, e) for e in oprf_inputs.blinded]

    assert measure(benchmark, "blind_evaluate", run) == oprf_inputs.evaluated


def test_raw_scalarmult_ceiling(benchmark: BenchmarkFixture, oprf_inputs: Oprf) -> None:
    def run() -> list[bytes]:
        secret = oprf_inputs.secret
        return [pysodium.crypto_scalarmult_ristretto255(secret, e) for e in oprf_inputs.blinded]

    assert measure(benchmark, "raw_mul", run) == oprf_inputs.evaluated


def test_oprf_finalize(benchmark: BenchmarkFixture, oprf_inputs: Oprf) -> None:
    def run() -> list[bytes]:
        return [
            oprf.finalize(message, blind, element)
            for message, blind, element in zip(
                oprf_inputs.messages, oprf_inputs.blinds, oprf_inputs.evaluated, strict=True
            )
        ]

    assert measure(benchmark, "finalize", run) == oprf_inputs.outputs


# -- re-sync token ----------------------------------------------------------------------------


@dataclass
class Resync:
    tokens: ResyncTokens
    token: bytes
    previous: bytes  # PREVIOUS packed hashes the token covers
    asked: bytes  # BATCH packed hashes, all but NEW of them among the previous


@pytest.fixture(scope="module")
def resync() -> Resync:
    tokens = ResyncTokens.from_peppers(secrets.token_bytes(32), ttl_seconds=3600)
    previous = os.urandom(32 * PREVIOUS)
    asked = previous[: 32 * (BATCH - NEW)] + os.urandom(32 * NEW)
    return Resync(tokens, tokens.issue("alice", previous), previous, asked)


def test_resync_renew(benchmark: BenchmarkFixture, resync: Resync) -> None:
    def run() -> tuple[int, bytes]:
        return resync.tokens.renew("alice", resync.token, resync.previous, resync.asked)

    cost, renewed = measure(benchmark, "renew", run)
    assert cost == NEW
    resync.tokens.verify(renewed, "alice", resync.previous + resync.asked[32 * (BATCH - NEW) :])


def test_renew_fingerprints_ceiling(
    benchmark: BenchmarkFixture, hashes: Hashes, resync: Resync
) -> None:
    both = resync.previous + resync.asked
    fingerprints = measure(
        benchmark, "renew_fingerprints", lambda: hashes.fingerprinter.fingerprints(both)
    )
    assert len(fingerprints) == FINGERPRINT_SIZE * (PREVIOUS + BATCH)


# -- report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    label: str
    ops: int  # ops in one measured call
    unit: str
    ceiling: str
    ceiling_label: str


STEPS = [
    Step("normalize_national", "normalize, national + region", 1, "numbers",
         "parse_national", "phonenumbers.parse"),
    Step("normalize_e164", "normalize, E.164", 1, "numbers", "parse_e164", "phonenumbers.parse"),
    Step("contact_hash", "contact_hash", 1, "hashes", "sha256", "hashlib.sha256"),
    Step("fingerprints", f"fingerprints, {BATCH:,} hashes", BATCH, "hashes",
         "raw_aes", "one AES-256-ECB call, 16 KB"),
    Step("lookup", f"index lookup, {BATCH:,} fingerprints, {USERS:,} users", BATCH,
         "fingerprints", "set", "set membership, same keys"),
    Step("request_encode", f"DiscoverRequest encode, {BATCH:,} hashes", 1, "messages",
         "request_copy", "bytes copy, same size"),
    Step("request_decode", f"DiscoverRequest decode, {BATCH:,} hashes", 1, "messages",
         "request_copy", "bytes copy, same size"),
    Step("response_encode", f"DiscoverResponse encode, {MATCHES} matches", 1, "messages",
         "response_copy", "bytes copy, same size"),
    Step("response_decode", f"DiscoverResponse decode, {MATCHES} matches", 1, "messages",
         "response_copy", "bytes copy, same size"),
    Step("blind", "OPRF blind (client)", ELEMENTS, "elements",
         "raw_h2g_mul", "libsodium from_hash + scalarmult"),
    Step("finalize", "OPRF finalize (client)", ELEMENTS, "elements",
         "raw_mul", "libsodium scalarmult"),
    Step("blind_evaluate", "OPRF blind_evaluate (server)", ELEMENTS, "elements",
         "raw_mul", "libsodium scalarmult"),
    Step("evaluate", "OPRF evaluate (registration)", ELEMENTS, "elements",
         "raw_h2g_mul", "libsodium from_hash + scalarmult"),
    Step("renew", f"re-sync renew, {BATCH:,} hashes + {PREVIOUS:,} previous", 1, "requests",
         "renew_fingerprints", f"fingerprints of {BATCH + PREVIOUS:,} hashes"),
]  # fmt: skip


def duration(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def rate(per_second: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if per_second >= scale:
            return f"{per_second / scale:.3g} {unit}"
    return f"{per_second:.3g}"


def test_report() -> None:
    """Print the figures of this run (only when the benchmarks were enabled)."""
    wanted = {step.name for step in STEPS} | {step.ceiling for step in STEPS}
    if wanted - RESULTS.keys():
        pytest.skip("benchmarks disabled: run `make bench` for figures")
    lines = [
        f"\nmicro benchmarks, one core, {USERS:,} users, medians:",
        "| step | per op | ops/s | ceiling in the same run | ceiling per op | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for step in STEPS:
        per_op = RESULTS[step.name] / step.ops
        ceiling_per_op = RESULTS[step.ceiling] / step.ops
        lines.append(
            f"| {step.label} | {duration(per_op)} | {rate(1 / per_op)} {step.unit}/s"
            f" | {step.ceiling_label} | {duration(ceiling_per_op)} "
            f"| {ceiling_per_op / per_op:.2f} |"
        )
    print("\n".join(lines))
