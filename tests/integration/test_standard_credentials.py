"""An issuer of standard JWTs, its keys at a JWKS URL, calls onnet with no onnet code.

The issuer here is jwcrypto (another JOSE library than the PyJWT that verifies), its JWKS is
served by a local HTTP server, and the server is a real `onnet serve` process that fetches
it. The SDK only carries the token. Then the issuer rotates its keys, and its JWKS endpoint
fails: the server picks up the new key, drops the withdrawn one, and keeps the last good
set while the endpoint is down.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from jwcrypto import jwk
from jwcrypto import jwt as jose

import onnet
from tests.security import DEFAULT_ACCOUNT_NUMBER, security
from tests.servers import server_process
from tests.waiting import wait_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jwcrypto's own

ISSUER = "https://id.example.com/"
AUDIENCE = "contacts"


@dataclass
class JwksEndpoint:
    """What the local HTTP server answers at /jwks.json, and how often it was asked."""

    keys: list[jwk.JWK]
    failing: bool = False
    fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self) -> bytes:
        return json.dumps({"keys": [k.export_public(as_dict=True) for k in self.keys]}).encode()


@contextmanager
def jwks_server(endpoint: JwksEndpoint) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with endpoint.lock:
                endpoint.fetches += 1
                failing, body = endpoint.failing, endpoint.body()
            if failing:
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def mint(key: jwk.JWK, subject: str, kind: str) -> str:
    algorithm = {"RSA": "RS256", "EC": "ES256"}[key.key_type]
    now = int(time.time())
    token = jose.JWT(
        header={"alg": algorithm, "kid": key.key_id, "typ": "JWT"},
        claims={
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "onnet_kind": kind,
            "iat": now,
            "exp": now + 300,
        },
    )
    token.make_signed_token(key)
    return str(token.serialize())


def accepted(target: str, token: str) -> bool:
    """Whether the server takes ``token`` for a Discover call (Unauthenticated if not)."""
    with onnet.Client(target, credentials=security().channel(), token=token) as client:
        try:
            client.discover(["+14155550100"])
        except onnet.AuthenticationError:
            return False
    return True


def test_a_jwt_issuer_with_a_jwks_url_needs_no_onnet_code() -> None:
    first = jwk.JWK.generate(kty="RSA", size=2048, kid="2026-12-a")
    second = jwk.JWK.generate(kty="EC", crv="P-256", kid="2026-12-b")
    endpoint = JwksEndpoint([first])
    with jwks_server(endpoint) as url:
        env = {
            "ONNET_AUTH_JWKS": "",  # no file: the URL alone
            "ONNET_AUTH_JWKS_URL": url,
            "ONNET_AUTH_JWKS_REFRESH": "1",
            "ONNET_AUTH_ALGORITHMS": "RS256,ES256",
            "ONNET_AUTH_ISSUER": ISSUER,
            "ONNET_AUTH_AUDIENCE": AUDIENCE,
        }
        with server_process(env) as server:
            service = mint(first, "account-service", "service")
            with onnet.RegistryClient(
                server.target, credentials=security().channel(), token=service
            ) as registry:
                registry.register("alice", DEFAULT_ACCOUNT_NUMBER, discoverable=False)
            signed_by_first = mint(first, "alice", "account")
            assert accepted(server.target, signed_by_first)
            assert not accepted(server.target, mint(second, "alice", "account"))

            # The issuer rotates: the new key verifies once fetched, the withdrawn one stops.
            with endpoint.lock:
                endpoint.keys = [second]
            wait_until(
                lambda: accepted(server.target, mint(second, "alice", "account")),
                "the new key is fetched",
                timeout=20,
            )
            # The very token accepted before: no verified credential outlives its key.
            assert not accepted(server.target, signed_by_first)

            # The endpoint fails: the last good keys keep working.
            with endpoint.lock:
                endpoint.failing, failed_from = True, endpoint.fetches
            wait_until(lambda: endpoint.fetches >= failed_from + 1, "a fetch that fails")
            assert accepted(server.target, mint(second, "alice", "account"))
        log = server.log()
    assert "JWKS refresh failed, keeping the last good keys" in log
    assert "Traceback" not in log


def test_a_jwks_url_that_cannot_be_fetched_at_start_is_a_clear_error() -> None:
    endpoint = JwksEndpoint([], failing=True)
    with jwks_server(endpoint) as url:
        env = {"ONNET_AUTH_JWKS": "", "ONNET_AUTH_JWKS_URL": url}
        with server_process(env, wait=False) as server:
            assert server.process.wait(30) != 0
            log = server.log()
    assert "ONNET_AUTH_JWKS_URL: JWKS at 127.0.0.1" in log
    assert "Traceback" not in log
