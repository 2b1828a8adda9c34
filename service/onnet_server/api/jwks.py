"""The keys that sign credentials: a JWKS document (RFC 7517), from a file and/or a URL.

An identity provider (Keycloak, Auth0, Cognito, Firebase, or the company's own account
service) publishes its public signing keys as a JWKS. onnet reads one from a file (fixed
for the process's life) and, optionally, from a URL that it fetches again every
``refresh_seconds`` in the background (``jwks_fetch.py``): a key the provider adds is used
without a restart, one it removes stops verifying. A fetch that fails keeps the last good
set and is retried with growing pauses; keys from the URL that could not be renewed for
``max_age_seconds`` are dropped (fail closed), so an endpoint that stays broken cannot keep
a withdrawn key alive. Failures are logged with their reason and the URL's host only.

Each key is pinned to the one algorithm its type allows (``ALGORITHM_OF``): Ed25519 keys
verify EdDSA, P-256 keys ES256, RSA keys (2048 bits or more) RS256, and only if that
algorithm is configured. So a token cannot choose how its key is used (RFC 8725 section
2.1: no HS256 token signed with an RSA public key as its secret, no ``none``). A key is
found by its ``kid`` and that algorithm together. Skipped, and counted in the log: keys for
encryption (``use`` other than ``sig``, ``key_ops`` without ``verify``), keys of other
types or curves, keys without a ``kid``, keys announced for another algorithm than their
type's, malformed keys, and keys whose (kid, algorithm) comes twice. One odd key does not
make the whole set unusable; a private key in the set does (it must not be published).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from onnet.protocol import JWT_ALGORITHMS
from onnet_server.api.jwks_fetch import FetchError, fetch_document, host_of

__all__ = [
    "ALGORITHM_OF",
    "JwksError",
    "KeySet",
    "SigningKey",
    "keys_of_jwks",
]

_log = logging.getLogger(__name__)


ALGORITHM_OF = {("OKP", "Ed25519"): "EdDSA", ("EC", "P-256"): "ES256", ("RSA", None): "RS256"}
"""The one algorithm each key type (``kty``, ``crv``) verifies."""

MIN_RSA_BITS = 2048
"""Smaller RSA keys are skipped (RFC 7518 section 3.3)."""

_MAX_DOCUMENT_BYTES = 1 << 20  # a JWKS of a few keys is a few KB
_FETCH_TIMEOUT = 10.0

KeyName = tuple[str, str]
"""A key's ``kid`` and the algorithm it verifies."""


class JwksError(ValueError):
    """A JWKS document or its source is unusable; the message says which and why.

    ``source`` names the input at fault: ``"file"``, ``"url"``, or ``""`` (the algorithms,
    or no source at all), so that a configuration error can name its setting.
    """

    def __init__(self, message: str, source: str = "") -> None:
        """``message`` says what is wrong; ``source`` is where (see the class)."""
        super().__init__(message)
        self.source = source


@dataclass(frozen=True)
class SigningKey:
    """One public key of the set, with the one algorithm it verifies."""

    algorithm: str
    key: Any
    """The public key object PyJWT verifies with (a ``cryptography`` public key)."""


class _Skipped(Exception):
    """A key onnet does not verify with (counted, not fatal)."""


def keys_of_jwks(
    document: bytes, algorithms: Iterable[str], source: str
) -> dict[KeyName, SigningKey]:
    """The usable keys of a JWKS ``document``, by (kid, algorithm), for ``algorithms``.

    Raises JwksError naming ``source`` when the document is not a JWKS, holds a private
    key, or has no usable key. Other keys it cannot use are skipped and counted in the log.
    """
    allowed = frozenset(algorithms)
    try:
        parsed = json.loads(document)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        raise JwksError(f"{source}: not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("keys"), list):
        raise JwksError(f'{source}: not a JWKS (a JSON object with a "keys" list)')
    keys: dict[KeyName, SigningKey] = {}
    twice: set[KeyName] = set()
    skipped = 0
    for entry in parsed["keys"]:
        try:
            name, signing = _signing_key(entry, allowed)
        except _Skipped:
            skipped += 1
            continue
        except JwksError as error:
            raise JwksError(f"{source}: {error}") from None
        if name in keys or name in twice:  # ambiguous: neither is used
            skipped += 2 if keys.pop(name, None) is not None else 1
            twice.add(name)
            continue
        keys[name] = signing
    if skipped:
        _log.warning("%s: %d key(s) skipped (not usable for %s)", source, skipped, sorted(allowed))
    if not keys:
        raise JwksError(
            f"{source}: no key usable for {', '.join(sorted(allowed))} "
            "(each needs a kid, and a type that verifies a configured algorithm)"
        )
    return keys


def _signing_key(entry: object, allowed: frozenset[str]) -> tuple[KeyName, SigningKey]:
    """The key ``entry`` describes, or _Skipped when it is not one onnet verifies with."""
    if not isinstance(entry, dict):
        raise _Skipped
    kid, kty, crv, ops = entry.get("kid"), entry.get("kty"), entry.get("crv"), entry.get("key_ops")
    if entry.get("use", "sig") != "sig" or not isinstance(kid, str) or not kid:
        raise _Skipped
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise _Skipped
    if any(member in entry for member in ("d", "p", "q", "k")):
        # The kid comes from whoever serves the JWKS, and this message is logged at every
        # retry: shown cut short and escaped.
        raise JwksError(
            f"kid {kid[:32]!a} is a private or secret key; a JWKS for verifiers holds public keys"
        )
    curve = crv if kty != "RSA" and isinstance(crv, str) else None
    algorithm = ALGORITHM_OF.get((kty, curve)) if isinstance(kty, str) else None
    # A key announced for another algorithm than its type verifies is not guessed at.
    if algorithm is None or algorithm not in allowed or entry.get("alg", algorithm) != algorithm:
        raise _Skipped
    try:
        key = jwt.PyJWK(dict(entry), algorithm=algorithm).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        raise _Skipped from None
    if algorithm == "RS256" and key.key_size < MIN_RSA_BITS:
        raise _Skipped
    return (kid, algorithm), SigningKey(algorithm, key)


@contextlib.contextmanager
def _blamed_on(source: str) -> Iterator[None]:
    """A JwksError raised inside names ``source`` as the input at fault."""
    try:
        yield
    except JwksError as error:
        error.source = source
        raise


def _check_url(url: str) -> None:
    """A JWKS URL the fetcher can use: http(s), a host, a numeric port (JwksError if not).

    Checked at start, so that a typo is a configuration error, not an exception in the
    refresher; the message repeats no part of the URL (it may hold a secret).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise JwksError("the JWKS URL must be https:// (or http:// on a trusted network)")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise JwksError("the JWKS URL's port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise JwksError("the JWKS URL names no host")


class KeySet:
    """The keys credentials are verified with: a file's, a URL's, or both, kept current."""

    def __init__(
        self,
        algorithms: Iterable[str],
        *,
        file: Path | None = None,
        url: str | None = None,
        refresh_seconds: float = 300.0,
        retry_seconds: float = 30.0,
        max_age_seconds: float = 86_400.0,
    ) -> None:
        """Read ``file`` now; fetch ``url`` with ``fetch_now`` (once before serving).

        ``url`` is fetched again every ``refresh_seconds``. After a failed fetch, it is
        tried again after ``retry_seconds``, doubling up to ``refresh_seconds``; a token
        naming an unknown kid asks for a fetch, but never sooner than ``retry_seconds``
        after the last attempt (made-up kids must not become a stream of fetches). Keys the
        URL has not confirmed for ``max_age_seconds`` are dropped. Raises JwksError when
        neither source is given or the file is unusable.
        """
        self._algorithms = tuple(algorithms)
        unknown = set(self._algorithms) - set(JWT_ALGORITHMS)
        if not self._algorithms or unknown:
            raise JwksError(
                f"algorithms must be some of {', '.join(JWT_ALGORITHMS)}"
                + (f", not {', '.join(sorted(unknown))}" if unknown else "")
            )
        if file is None and url is None:
            raise JwksError("give a JWKS file or a JWKS URL")
        if url is not None:
            with _blamed_on("url"):
                _check_url(url)
        self._url = url
        self._refresh = refresh_seconds
        self._retry = min(retry_seconds, refresh_seconds)
        self._max_age = max_age_seconds
        self._fixed: dict[KeyName, SigningKey] = {}
        if file is not None:
            with _blamed_on("file"):
                try:
                    document = file.read_bytes()
                except OSError as error:
                    raise JwksError(f"{file}: {error.strerror}") from None
                self._fixed = keys_of_jwks(document, self._algorithms, str(file))
        self._keys = dict(self._fixed)
        self._kids = frozenset(kid for kid, _ in self._keys)
        self._confirmed_at = float("-inf")  # the URL's last good answer
        self._attempted_at = float("-inf")  # the URL's last fetch, whatever its outcome
        self._wanted = asyncio.Event()
        self._generation = 0

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The configured algorithms."""
        return self._algorithms

    def knows(self, kid: str) -> bool:
        """Whether a key named ``kid`` is in the set, for any algorithm."""
        return kid in self._kids

    def get(self, kid: str, algorithm: str) -> SigningKey | None:
        """The key named ``kid`` for ``algorithm``, or None (a fetch is then asked for).

        Keys the URL has not confirmed for ``max_age_seconds`` are dropped first, whatever
        the refresher is doing (a fetch that hangs must not keep them trusted).
        """
        if self._url is not None:
            self._drop_if_stale()
        key = self._keys.get((kid, algorithm))
        if key is None and self._url is not None:
            self._wanted.set()
        return key

    @property
    def generation(self) -> int:
        """Grows whenever the set changes: verified credentials cached before are dropped.

        Read before every use of a cached verification, so it is where keys that went
        unconfirmed too long are dropped, whatever the refresher is doing (it may be stuck).
        """
        if self._url is not None:
            self._drop_if_stale()
        return self._generation

    def fetch_now(self) -> None:
        """Fetch the URL (blocking); raises JwksError if it fails. No URL: nothing to do."""
        if self._url is not None:
            self._attempted_at = time.monotonic()
            with _blamed_on("url"):
                self._install(self._fetch(self._url))

    async def keep_current(self) -> None:
        """Fetch the URL every ``refresh_seconds`` (sooner for an unknown kid), forever.

        A failed fetch keeps the last good set (until it is too old), logs why, and is
        retried after growing pauses. Nothing a fetch meets ends this loop.
        """
        if self._url is None:
            return
        url, wait, failures = self._url, self._refresh, 0
        while True:
            with contextlib.suppress(TimeoutError):  # a refresh is due, or a kid is wanted
                await asyncio.wait_for(self._wanted.wait(), wait)
            self._wanted.clear()
            since = time.monotonic() - self._attempted_at
            if since < self._retry:
                await asyncio.sleep(self._retry - since)
            self._attempted_at = time.monotonic()
            try:
                self._install(await asyncio.to_thread(self._fetch, url))
                wait, failures = self._refresh, 0
            except Exception as error:  # a refresher that died would keep old keys forever
                reason = str(error) if isinstance(error, JwksError) else type(error).__name__
                failures += 1
                wait = min(self._retry * 2 ** (failures - 1), self._refresh)
                _log.warning(
                    "JWKS refresh failed, keeping the last good keys: %s",
                    reason,
                    extra={"event": "jwks_refresh_failed", "retry_seconds": wait},
                )
                self._drop_if_stale()

    def _drop_if_stale(self) -> None:
        """Fail closed: keys the URL has not confirmed for too long are no longer trusted."""
        if time.monotonic() - self._confirmed_at > self._max_age and self._keys != self._fixed:
            self._keys = dict(self._fixed)
            self._kids = frozenset(kid for kid, _ in self._keys)
            self._generation += 1
            _log.error(
                "JWKS keys from the URL not confirmed for %.0f s: dropped until a fetch succeeds",
                self._max_age,
                extra={"event": "jwks_keys_expired"},
            )

    def _install(self, fetched: Mapping[KeyName, SigningKey]) -> None:
        self._confirmed_at = time.monotonic()
        keys = {**fetched, **self._fixed}
        if keys != self._keys:
            self._keys = keys
            self._kids = frozenset(kid for kid, _ in keys)
            self._generation += 1
            _log.info("JWKS keys now in use: %d", len(keys))

    def _fetch(self, url: str) -> dict[KeyName, SigningKey]:
        """The URL's keys, or JwksError saying why not (naming the host, never the query)."""
        try:
            document = fetch_document(url, timeout=_FETCH_TIMEOUT, max_bytes=_MAX_DOCUMENT_BYTES)
        except FetchError as error:
            raise JwksError(f"JWKS at {error}") from None
        return keys_of_jwks(document, self._algorithms, f"JWKS at {host_of(url)}")
