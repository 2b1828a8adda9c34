"""A whole session at DEBUG level leaves no number, hash, fingerprint or user id in the logs."""

from __future__ import annotations

import base64
import secrets

import pytest

import onnet
import onnet.v1.discovery_pb2
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


def test_a_full_session_logs_no_personal_data() -> None:
    pepper = secrets.token_bytes(32)
    env = {"ONNET_PEPPER": pepper.hex(), "ONNET_LOG_LEVEL": "DEBUG"}
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
        assert server.terminate() == 0
    log = server.log()
    assert "Discover: 5 hashes, 2 matches" in log  # DEBUG lines were written
    assert "Register:" in log
    leaked = sorted(s for s in forbidden_strings(pepper) if s in log)
    assert leaked == []
