"""Fetching a JWKS from a hostile or broken endpoint (a local server on 127.0.0.1).

No redirect is followed, a trickling answer ends at its deadline, an oversized one is cut,
the URL's password never reaches a message, and the background refresher survives whatever
a fetch meets, keeps its pace while the endpoint fails, and drops keys the endpoint has not
confirmed for too long.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from jwcrypto import jwk

from onnet_server.api.jwks import JwksError, KeySet
from onnet_server.api.jwks_fetch import FetchError, fetch_document
from tests.waiting import wait_until_async

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jwcrypto's own

Answer = Callable[[socket.socket], None]
"""What the endpoint does with one connection (after reading the request)."""


def jwks_of(*keys: jwk.JWK) -> bytes:
    return json.dumps({"keys": [k.export_public(as_dict=True) for k in keys]}).encode()


def http_answer(body: bytes, status: str = "200 OK", headers: str = "") -> Answer:
    def answer(connection: socket.socket) -> None:
        connection.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}"
            "Connection: close\r\n\r\n".encode()
            + body
        )

    return answer


class Endpoint:
    """A raw TCP server on 127.0.0.1 answering each connection with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/jwks.json"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._one, args=(connection,), daemon=True).start()

    def _one(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            try:
                connection.recv(65536)
                self.answer(connection)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


@contextmanager
def endpoint(answer: Answer) -> Iterator[Endpoint]:
    server = Endpoint(answer)
    try:
        yield server
    finally:
        server.close()


def test_a_redirect_is_not_followed() -> None:
    with endpoint(lambda c: None) as target:
        redirect = http_answer(b"", "302 Found", f"Location: {target.url}\r\n")
        refused = pytest.raises(FetchError, match=r"HTTP status 302 \(redirects are not followed\)")
        with endpoint(redirect) as first, refused:
            fetch_document(first.url, timeout=5, max_bytes=1000)
        assert target.connections == 0


def test_a_trickling_answer_ends_at_its_deadline() -> None:
    def trickle(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(200):
            connection.sendall(b"{")
            time.sleep(0.05)

    with endpoint(trickle) as slow:
        started = time.monotonic()
        with pytest.raises(FetchError, match="no complete answer within 1 s"):
            fetch_document(slow.url, timeout=1, max_bytes=200_000)
    assert time.monotonic() - started < 5  # one read's timeout past the deadline, at most


def test_a_trickling_status_line_and_headers_end_at_the_deadline_too() -> None:
    def trickle_headers(connection: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
            connection.sendall(bytes([byte]))
            time.sleep(0.05)

    with endpoint(trickle_headers) as slow:
        started = time.monotonic()
        with pytest.raises(FetchError, match="no complete answer within 1 s"):
            fetch_document(slow.url, timeout=1, max_bytes=1000)
    assert time.monotonic() - started < 3


async def test_keys_are_dropped_at_their_maximum_age_even_while_a_fetch_hangs() -> None:
    """No refresher outcome is needed: a key the URL has not confirmed in time is gone."""
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="k")
    with endpoint(http_answer(jwks_of(key))) as issuer:
        keys = KeySet(("EdDSA",), url=issuer.url, max_age_seconds=0.5)
        keys.fetch_now()
    assert keys.get("k", "EdDSA") is not None
    started = time.monotonic()
    while keys.get("k", "EdDSA") is not None:  # no keep_current running at all
        assert time.monotonic() - started < 5, "the stale key was never dropped"
        await asyncio.sleep(0.05)


def test_an_oversized_answer_is_cut() -> None:
    refused = pytest.raises(FetchError, match="larger than 1000 bytes")
    with endpoint(http_answer(b" " * 5000)) as big, refused:
        fetch_document(big.url, timeout=5, max_bytes=1000)


def test_the_urls_password_and_query_never_reach_a_message() -> None:
    messages = []
    with endpoint(http_answer(b"nope", "503 Service Unavailable")) as failing:
        for url in (failing.url + "?key=hidden", failing.url.replace("//", "//svc:s3cr3t@")):
            with pytest.raises(FetchError) as refused:
                fetch_document(url, timeout=5, max_bytes=1000)
            messages.append(str(refused.value))
    assert "HTTP status 503" in messages[0]
    for message in messages:
        assert message.startswith("127.0.0.1:")
        assert "s3cr3t" not in message
        assert "hidden" not in message


def test_an_absurdly_nested_document_is_a_clear_error() -> None:
    with endpoint(http_answer(b"[" * 100_000 + b"]" * 100_000)) as nested:
        keys = KeySet(("EdDSA",), url=nested.url)
        with pytest.raises(JwksError, match="not JSON"):
            keys.fetch_now()


async def test_the_refresher_survives_anything_a_fetch_meets() -> None:
    """A broken status line once ended the refresher for good, keeping old keys forever."""
    old = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="old")
    new = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="new")
    with endpoint(http_answer(jwks_of(old))) as issuer:
        keys = KeySet(("EdDSA",), url=issuer.url, refresh_seconds=0.1, retry_seconds=0.05)
        keys.fetch_now()
        refreshing = asyncio.ensure_future(keys.keep_current())
        try:
            issuer.answer = lambda c: c.sendall(b"GARBAGE\r\n\r\n")
            garbage_from = issuer.connections
            await wait_until_async(
                lambda: issuer.connections >= garbage_from + 2, "two broken fetches"
            )
            assert not refreshing.done()
            issuer.answer = http_answer(jwks_of(new))
            await wait_until_async(lambda: keys.get("new", "EdDSA") is not None, "the new key")
            assert keys.get("old", "EdDSA") is None
        finally:
            refreshing.cancel()


async def test_unknown_kids_during_an_outage_do_not_become_a_flood_of_fetches() -> None:
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="k")
    with endpoint(http_answer(jwks_of(key))) as issuer:
        keys = KeySet(("EdDSA",), url=issuer.url, refresh_seconds=60, retry_seconds=0.5)
        keys.fetch_now()
        issuer.answer = http_answer(b"", "503 Service Unavailable")
        refreshing = asyncio.ensure_future(keys.keep_current())
        try:
            started, before = time.monotonic(), issuer.connections
            while time.monotonic() - started < 2.0:
                assert keys.get("made-up", "EdDSA") is None  # each asks for a fetch
                await asyncio.sleep(0.001)
            fetches = issuer.connections - before
        finally:
            refreshing.cancel()
    # Pauses of 0.5, 1, 2 s after failures: a few fetches in 2 s, not thousands.
    assert 1 <= fetches <= 4, fetches


async def test_keys_the_url_stops_confirming_are_dropped_after_their_maximum_age() -> None:
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="k")
    with endpoint(http_answer(jwks_of(key))) as issuer:
        keys = KeySet(
            ("EdDSA",), url=issuer.url, refresh_seconds=0.1, retry_seconds=0.05, max_age_seconds=1
        )
        keys.fetch_now()
        generation = keys.generation
        issuer.answer = http_answer(b"", "503 Service Unavailable")
        refreshing = asyncio.ensure_future(keys.keep_current())
        try:
            assert keys.get("k", "EdDSA") is not None  # the last good key, for now
            await wait_until_async(lambda: keys.get("k", "EdDSA") is None, "the stale key dropped")
            assert keys.generation > generation  # cached verifications go with it
        finally:
            refreshing.cancel()


def test_keys_go_stale_even_when_the_refresher_is_stuck(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached verification asks the generation first: stale keys change it, no fetch needed."""
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="k")
    with endpoint(http_answer(jwks_of(key))) as issuer:
        keys = KeySet(("EdDSA",), url=issuer.url, max_age_seconds=60)
        keys.fetch_now()
    generation = keys.generation
    assert keys.generation == generation  # still confirmed
    later = time.monotonic() + 61
    monkeypatch.setattr(time, "monotonic", lambda: later)  # no refresher runs meanwhile
    assert keys.generation > generation


async def test_the_refresher_survives_an_error_no_check_foresaw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="k")
    with endpoint(http_answer(jwks_of(key))) as issuer:
        keys = KeySet(("EdDSA",), url=issuer.url, refresh_seconds=0.1, retry_seconds=0.05)
        keys.fetch_now()
        failures: list[int] = []

        def unforeseen(url: str, *, timeout: float, max_bytes: int) -> bytes:
            failures.append(1)
            raise RuntimeError("a bug in a library")

        monkeypatch.setattr("onnet_server.api.jwks.fetch_document", unforeseen)
        refreshing = asyncio.ensure_future(keys.keep_current())
        try:
            await wait_until_async(lambda: len(failures) >= 2, "two failed fetches")
            assert not refreshing.done()
            assert keys.get("k", "EdDSA") is not None
        finally:
            refreshing.cancel()
