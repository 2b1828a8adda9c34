"""A whole session at DEBUG level leaves no number, hash, fingerprint or user id in the logs."""

from __future__ import annotations

import base64
import secrets

import pytest
import redis

import onnet
import onnet.v1.discovery_pb2
from onnet import _oprf as oprf
from onnet_server.core.fingerprint import Fingerprinter
from tests.servers import server_process

USERS = {
    f"user-{secrets.token_hex(4)}": n for n in ("+14155550100", "+442079460958", "+4930901820")
}
OUTSIDERS = ["+33612345678", "+819012345678"]


def forbidden_strings(pepper: bytes) -> set[str]:
    fingerprinter = Fingerprinter(pepper)
    found: set[str] = set(USERS)
    for e164 in [*USERS.values(), *OUTSIDERS]:
        digest = onnet.contact_hash(e164)
        fingerprint = fingerprinter.fingerprint(digest)
        found |= {e164, e164[1:], e164[-7:]}
        for secret in (digest, fingerprint):
            found |= {secret.hex(), secret.hex()[:16], base64.b64encode(secret).decode()[:20]}
            found.add(secret.hex().upper()[:16])
    found |= {pepper.hex(), pepper.hex()[:16]}
    return found


def as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def redis_contents(client: redis.Redis) -> bytes:
    """Every key and every value in Redis, as one blob of bytes."""
    blob = bytearray()
    for key in client.scan_iter(count=1000):
        blob += as_bytes(key)
        kind = as_bytes(client.type(key))
        if kind == b"hash":
            for field, value in client.hgetall(key).items():
                blob += as_bytes(field) + as_bytes(value)
        elif kind == b"stream":
            for _, fields in client.xrange(key) or []:
                for field, value in (fields or {}).items():
                    blob += as_bytes(field) + as_bytes(value)
        elif kind == b"string":
            blob += as_bytes(client.get(key) or b"")
    return bytes(blob)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_full_session_logs_no_personal_data(store: str, request: pytest.FixtureRequest) -> None:
    pepper = secrets.token_bytes(32)
    env = {"ONNET_PEPPER": pepper.hex(), "ONNET_LOG_LEVEL": "DEBUG"}
    if store == "redis":
        env["ONNET_REDIS_URL"] = request.getfixturevalue("redis_url")
    with server_process(env) as server:
        with onnet.RegistryClient(server.target) as registry:
            for user_id, e164 in USERS.items():
                registry.register(user_id, e164)
            first = next(iter(USERS))
            registry.register(first, OUTSIDERS[0], discoverable=False)  # a move
            registry.register(first, USERS[first])
            with pytest.raises(onnet.InvalidArgumentError):
                registry.register(first, "+1 415 555 0100")  # bad input is logged safely too
            registry.unregister(first)
            with pytest.raises(onnet.NotFoundError):
                registry.unregister(first)
        with onnet.Client(server.target) as client:
            book = [*USERS.values(), *OUTSIDERS, "555-0100"]
            assert len(client.discover(book, "US").matches) == 2
            with pytest.raises(onnet.InvalidArgumentError):
                client.calls.discover(onnet.v1.discovery_pb2.DiscoverRequest(hashes=b"x" * 33))
            blinded = b"".join(oprf.blind(e164.encode())[1] for e164 in OUTSIDERS)
            evaluated = client.calls.blind_evaluate(
                onnet.v1.discovery_pb2.BlindEvaluateRequest(blinded_elements=blinded)
            ).evaluated_elements
        assert server.terminate() == 0
    log = server.log()
    assert "Discover: 5 hashes, 2 matches" in log  # DEBUG lines were written
    assert "Register:" in log
    assert "BlindEvaluate: 2 elements" in log
    elements = [blinded[i : i + 32] for i in range(0, 64, 32)]
    elements += [evaluated[i : i + 32] for i in range(0, 64, 32)]
    private_mode = {element.hex()[:16] for element in elements}
    leaked = sorted(s for s in forbidden_strings(pepper) | private_mode if s in log)
    assert leaked == []
    if store == "redis":
        # What Redis keeps: fingerprints and user ids of registered users, never a number
        # or an uploaded hash; nothing of the erased user but the erasure event's name.
        contents = redis_contents(redis.Redis.from_url(env["ONNET_REDIS_URL"]))
        fingerprinter = Fingerprinter(pepper)
        for e164 in [*USERS.values(), *OUTSIDERS]:
            digest = onnet.contact_hash(e164)
            assert e164.encode() not in contents
            assert digest not in contents
            assert digest.hex().encode() not in contents
        erased = next(iter(USERS))
        for e164 in (USERS[erased], OUTSIDERS[0]):  # both numbers the erased user held
            assert fingerprinter.fingerprint(onnet.contact_hash(e164)) not in contents
        assert contents.count(erased.encode()) == 1
