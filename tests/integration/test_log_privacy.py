"""Evidence for P2 and the log rule: a session keeps nothing uploaded, logs nothing personal."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
import redis

import onnet
import onnet.v1.discovery_pb2
from onnet.protocol import oprf
from onnet_server.core.fingerprint import Fingerprinter
from tests.security import discovery_client, registry_client, security
from tests.servers import server_process

USERS = {
    f"user-{secrets.token_hex(4)}": n for n in ("+14155550100", "+442079460958", "+4930901820")
}
OUTSIDERS = ["+33612345678", "+819012345678", "+61412345678", "+5511912345678"]


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
        elif kind == b"set":
            for member in client.smembers(key):
                blob += as_bytes(member)
        else:
            raise AssertionError(f"a key of a type this scan does not read: {kind!r}")
    return bytes(blob)


@pytest.mark.parametrize(("store", "log_format"), [("memory", "text"), ("redis", "json")])
def test_a_full_session_keeps_and_logs_no_personal_data(
    store: str, log_format: str, request: pytest.FixtureRequest
) -> None:
    """Register, move, erase, block, discover, re-sync, private mode, hit the quota: then
    read every log line and every key and value in Redis. Nothing the client uploaded (P2)
    and no personal data is there."""
    pepper = secrets.token_bytes(32)
    env = {
        "ONNET_PEPPER": pepper.hex(),
        "ONNET_LOG_LEVEL": "DEBUG",
        "ONNET_LOG_FORMAT": log_format,
        "ONNET_QUOTA_NEW_NUMBERS": "8",
    }
    if store == "redis":
        env["ONNET_REDIS_URL"] = request.getfixturevalue("redis_url")
    users = list(USERS)
    account = users[2]  # discovers; users[1] blocks the number it holds
    credential = security().token(account)
    with server_process(env) as server:
        with registry_client(server.target) as registry:
            for user_id, e164 in USERS.items():
                registry.register(user_id, e164)
            registry.register(users[0], OUTSIDERS[0], discoverable=False)  # a move
            registry.register(users[0], USERS[users[0]])
            with pytest.raises(onnet.InvalidArgumentError):
                registry.register(users[0], "+1 415 555 0100")  # bad input is logged safely too
            assert registry.block(users[0], OUTSIDERS[1])
            registry.unregister(users[0])  # erases the user and the blocklist
            with pytest.raises(onnet.NotFoundError):
                registry.unregister(users[0])
            assert registry.block(users[1], USERS[account])
            assert registry.lookup([USERS[users[1]], OUTSIDERS[3]]) == [users[1], None]
            assert registry.screen(USERS[account], users[1]) is onnet.Verdict.BLOCKED
        with discovery_client(server.target, account=account) as client:
            book = [*USERS.values(), *OUTSIDERS[:2], "555-0100"]
            first = client.discover(book, "US")
            assert [m.user_id for m in first.matches] == [account]  # users[1] blocks us
            tokens = [client.sync_state.token]
            assert client.discover(book, "US").matches == first.matches  # a free re-sync
            tokens.append(client.sync_state.token)
            with pytest.raises(onnet.InvalidArgumentError):
                client.calls.discover(onnet.v1.discovery_pb2.DiscoverRequest(hashes=b"x" * 33))
            blinded = b"".join(oprf.blind(e164.encode())[1] for e164 in OUTSIDERS[:2])
            evaluated = client.calls.blind_evaluate(
                onnet.v1.discovery_pb2.BlindEvaluateRequest(blinded_elements=blinded)
            ).evaluated_elements
            with pytest.raises(onnet.QuotaExceededError):  # 5 + 2 of 8 spent: 2 more is 1 too many
                client.discover(OUTSIDERS[2:], "US")
        assert server.terminate() == 0
    log = server.log()
    assert "Discover: 5 hashes, 1 matches" in log  # DEBUG lines were written
    assert "Register:" in log
    assert "Block: changed=True" in log
    assert "Lookup: 2 numbers, 1 held" in log
    assert "Screen: blocked" in log
    assert "BlindEvaluate: 2 elements" in log
    elements = [blinded[i : i + 32] for i in range(0, 64, 32)]
    elements += [evaluated[i : i + 32] for i in range(0, 64, 32)]
    uploads = {value.hex()[:16] for value in [*elements, *tokens]}
    uploads |= {base64.b64encode(token).decode()[:20] for token in tokens}
    _header, payload, signature = credential.split(".")
    uploads |= {credential, payload[:20], signature[:20]}
    leaked = sorted(s for s in forbidden_strings(pepper) | uploads if s in log)
    assert leaked == []
    if log_format == "json":
        records = [json.loads(line) for line in log.splitlines()]
        assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
        (serving,) = [r for r in records if r.get("event") == "serving"]
        assert serving["port"] == server.port
        assert serving["store"] == "RedisRegistry"
    if store == "redis":
        contents = redis_contents(redis.Redis.from_url(env["ONNET_REDIS_URL"]))
        fingerprinter = Fingerprinter(pepper)
        # Never a number, a contact hash, a token or a blinded element.
        for e164 in [*USERS.values(), *OUTSIDERS]:
            digest = onnet.contact_hash(e164)
            assert e164.encode() not in contents
            assert digest not in contents
            assert digest.hex().encode() not in contents
        for value in [*elements, *tokens]:
            assert value not in contents
        assert credential.encode() not in contents
        # Of the discovering account's uploads, not even a fingerprint of a number that
        # is not registered: the server keeps no per-account contact list.
        for e164 in OUTSIDERS[1:]:
            assert fingerprinter.fingerprint(onnet.contact_hash(e164)) not in contents
        # Nothing of the erased user but the erasure event's name: record, old numbers and
        # blocklist are gone.
        for e164 in (USERS[users[0]], OUTSIDERS[0]):
            assert fingerprinter.fingerprint(onnet.contact_hash(e164)) not in contents
        assert contents.count(users[0].encode()) == 1
