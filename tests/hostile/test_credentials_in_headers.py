"""Finding 4: the credential header is parsed strictly, and never reaches a log line.

Before the fix, `Bearer <token>` followed by byte 0x85 or 0xA0 still authenticated (gRPC
decoded the invalid UTF-8 as Latin-1, and both bytes are whitespace to str.strip), while
gRPC's own logger wrote the whole header value, token included, at ERROR. "bearer",
"BEARER" and several spaces were accepted too.
"""

from __future__ import annotations

import pytest

from onnet._credentials import KIND_ACCOUNT
from tests.hostile.conftest import plaintext_registry, production_env
from tests.hostile.raw_http2 import call_status
from tests.security import DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_NUMBER, security
from tests.servers import server_process

OK, UNAUTHENTICATED = 0, 16
GET_CONFIG = "/onnet.v1.Discovery/GetConfig"


def _variants(token: bytes) -> dict[str, bytes]:
    return {
        "trailing 0x85": b"Bearer " + token + b"\x85",
        "trailing 0xA0": b"Bearer " + token + b"\xa0",
        "leading 0x85": b"Bearer \x85" + token,
        "lower-case scheme": b"bearer " + token,
        "upper-case scheme": b"BEARER " + token,
        "two spaces": b"Bearer  " + token,
        "trailing space": b"Bearer " + token + b" ",
        "tab": b"Bearer\t" + token,
        "no scheme": token,
    }


def test_only_exact_bearer_ascii_tokens_pass_and_none_is_logged() -> None:
    # gRPC's C core would print every header with these settings: onnet must silence it.
    env = production_env(GRPC_VERBOSITY="DEBUG", GRPC_TRACE="http,api", ONNET_LOG_LEVEL="DEBUG")
    token = security().token(DEFAULT_ACCOUNT, KIND_ACCOUNT).encode("ascii")
    with server_process(env, secure=False) as server:
        with plaintext_registry(server.target) as registry:
            registry.register(DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_NUMBER, discoverable=False)
        exact = call_status(server.port, GET_CONFIG, [(b"authorization", b"Bearer " + token)], b"")
        outcomes = {
            name: call_status(server.port, GET_CONFIG, [(b"authorization", value)], b"")
            for name, value in _variants(token).items()
        }
        twice = call_status(
            server.port,
            GET_CONFIG,
            [(b"authorization", b"Bearer " + token), (b"authorization", b"Bearer " + token)],
            b"",
        )
        server.terminate()
    assert exact[0] == OK
    refused = {name: code == UNAUTHENTICATED for name, (code, _) in outcomes.items()}
    assert all(refused.values()), refused
    assert twice[0] == UNAUTHENTICATED
    for _, message in outcomes.values():
        assert "authorization" in message
    log = server.log()
    _header, payload, signature = token.decode().split(".")
    for secret_part in (payload, signature):
        for start in range(0, len(secret_part) - 16, 8):
            assert secret_part[start : start + 16] not in log


@pytest.mark.parametrize("lifetime", [10**6, 10**30])
def test_a_credential_may_not_live_longer_than_the_maximum(lifetime: int) -> None:
    import onnet

    env = production_env()
    long_lived = onnet.issue_token(security().signing_key, DEFAULT_ACCOUNT, KIND_ACCOUNT, lifetime)
    with server_process(env, secure=False) as server:
        with plaintext_registry(server.target) as registry:
            registry.register(DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_NUMBER, discoverable=False)
        code, message = call_status(
            server.port, GET_CONFIG, [(b"authorization", b"Bearer " + long_lived.encode())], b""
        )
    assert code == UNAUTHENTICATED
    assert "lifetime" in message
