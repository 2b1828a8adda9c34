"""The keys that sign credentials: a JWKS document (RFC 7517), from a file and/or a URL.

An identity provider (Keycloak, Auth0, Cognito, Firebase, or the company's own account
service) publishes its public signing keys as a JWKS. onnet reads one from a file (fixed
for the process's life) and, optionally, from a URL that it fetches again every
``refresh_seconds`` in the background: a key the provider adds is used without a restart,
one it removes stops verifying. A fetch that fails keeps the last good set and is retried
sooner; the failure is logged with its reason and never with a key or a token.

Each key is pinned to the one algorithm its type allows (``ALGORITHM_OF``): Ed25519 keys
verify EdDSA, P-256 keys ES256, RSA keys RS256, and only if that algorithm is configured.
So a token cannot choose how its key is used (RFC 8725 section 2.1: no HS256 token signed
with an RSA public key as its secret, no ``none``). Keys for encryption (``"use": "enc"``),
keys of other types or curves and keys without a ``kid`` are skipped: a token names its key
by ``kid``, and the JWKS says which key that is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

__all__ = [
    "ALGORITHM_OF",
    "SUPPORTED_ALGORITHMS",
    "JwksError",
    "KeySet",
    "SigningKey",
    "keys_of_jwks",
]

_log = logging.getLogger(__name__)

SUPPORTED_ALGORITHMS = ("EdDSA", "ES256", "RS256")
"""The JWS algorithms a credential may be signed with, if configured (ONNET_AUTH_ALGORITHMS)."""

ALGORITHM_OF = {("OKP", "Ed25519"): "EdDSA", ("EC", "P-256"): "ES256", ("RSA", None): "RS256"}
"""The one algorithm each key type (``kty``, ``crv``) verifies."""

_MAX_DOCUMENT_BYTES = 1 << 20  # a JWKS of a few keys is a few KB
_FETCH_TIMEOUT = 10.0


class JwksError(ValueError):
    """A JWKS document or its source is unusable; the message says which and why."""


@dataclass(frozen=True)
class SigningKey:
    """One public key of the set, with the one algorithm it verifies."""

    algorithm: str
    key: Any
    """The public key object PyJWT verifies with (a ``cryptography`` public key)."""


def keys_of_jwks(document: bytes, algorithms: Iterable[str], source: str) -> dict[str, SigningKey]:
    """The usable keys of a JWKS ``document``, by ``kid``, for the configured ``algorithms``.

    Raises JwksError naming ``source`` when the document is not a JWKS, a key is malformed,
    or no key is usable.
    """
    allowed = frozenset(algorithms)
    try:
        parsed = json.loads(document)
    except ValueError:
        raise JwksError(f"{source}: not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("keys"), list):
        raise JwksError(f'{source}: not a JWKS (a JSON object with a "keys" list)')
    keys: dict[str, SigningKey] = {}
    for number, entry in enumerate(parsed["keys"], start=1):
        if not isinstance(entry, dict):
            raise JwksError(f"{source}: key {number} is not a JSON object")
        signing = _signing_key(entry, allowed, f"{source}: key {number}")
        if signing is not None:
            keys[entry["kid"]] = signing
    if not keys:
        raise JwksError(
            f"{source}: no key usable for {', '.join(sorted(allowed))} "
            "(each needs a kid, and a type that verifies a configured algorithm)"
        )
    return keys


def _signing_key(
    entry: Mapping[str, Any], allowed: frozenset[str], where: str
) -> SigningKey | None:
    """The key ``entry`` describes, or None when it is not one onnet verifies with."""
    kid = entry.get("kid")
    if entry.get("use", "sig") != "sig" or not isinstance(kid, str) or not kid:
        return None
    kty, crv = entry.get("kty"), entry.get("crv")
    if not isinstance(kty, str):
        return None
    curve = crv if kty != "RSA" and isinstance(crv, str) else None
    algorithm = ALGORITHM_OF.get((kty, curve))
    if algorithm is None or algorithm not in allowed:
        return None
    if entry.get("alg", algorithm) != algorithm:
        # A key announced for another algorithm than its type verifies: refused rather
        # than guessed, so that no header can pick a confusing use of it.
        raise JwksError(f"{where} says alg {entry.get('alg')!r}, but its type verifies {algorithm}")
    try:
        key = jwt.PyJWK(dict(entry), algorithm=algorithm).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        raise JwksError(f"{where} (kid given) is not a valid {algorithm} public key") from None
    if hasattr(key, "private_bytes"):
        raise JwksError(f"{where} holds a private key; a JWKS for verifiers holds public keys")
    return SigningKey(algorithm, key)


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
    ) -> None:
        """Read ``file`` now; fetch ``url`` with ``fetch_now`` (once before serving).

        ``url`` is fetched again every ``refresh_seconds``; after a failed fetch, or for a
        token naming a kid the set lacks, after ``retry_seconds`` (not sooner: a stream of
        made-up kids must not become a stream of fetches). Raises JwksError when neither
        source is given or the file is unusable.
        """
        self._algorithms = tuple(algorithms)
        unknown = set(self._algorithms) - set(SUPPORTED_ALGORITHMS)
        if not self._algorithms or unknown:
            raise JwksError(
                f"algorithms must be some of {', '.join(SUPPORTED_ALGORITHMS)}"
                + (f", not {', '.join(sorted(unknown))}" if unknown else "")
            )
        if file is None and url is None:
            raise JwksError("give a JWKS file or a JWKS URL")
        if url is not None and urlsplit(url).scheme not in ("https", "http"):
            raise JwksError("the JWKS URL must be https:// (or http:// on a trusted network)")
        self._url = url
        self._refresh = refresh_seconds
        self._retry = min(retry_seconds, refresh_seconds)
        self._fixed: dict[str, SigningKey] = {}
        if file is not None:
            try:
                document = file.read_bytes()
            except OSError as error:
                raise JwksError(f"{file}: {error.strerror}") from None
            self._fixed = keys_of_jwks(document, self._algorithms, str(file))
        self._fetched: dict[str, SigningKey] = {}
        self._keys = dict(self._fixed)
        self._fetched_at = float("-inf")
        self._wanted = asyncio.Event()
        self.generation = 0
        """Grows whenever the set changes: verified credentials cached before are dropped."""

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The configured algorithms."""
        return self._algorithms

    @property
    def kids(self) -> frozenset[str]:
        """The ids of the keys in the set now."""
        return frozenset(self._keys)

    def get(self, kid: str) -> SigningKey | None:
        """The key named ``kid``, or None (then a fetch is asked for, if there is a URL)."""
        key = self._keys.get(kid)
        if key is None and self._url is not None:
            self._wanted.set()
        return key

    def fetch_now(self) -> None:
        """Fetch the URL (blocking); raises JwksError if it fails. No URL: nothing to do."""
        if self._url is None:
            return
        self._install(self._fetch(self._url))

    async def keep_current(self) -> None:
        """Fetch the URL every ``refresh_seconds`` (sooner for an unknown kid), forever.

        A failed fetch keeps the last good set, logs why, and is retried sooner.
        """
        if self._url is None:
            return
        wait = self._refresh
        while True:
            with contextlib.suppress(TimeoutError):  # a refresh is due, or a kid is wanted
                await asyncio.wait_for(self._wanted.wait(), wait)
            self._wanted.clear()
            since = time.monotonic() - self._fetched_at
            if since < self._retry:
                await asyncio.sleep(self._retry - since)
            try:
                self._install(await asyncio.to_thread(self._fetch, self._url))
                wait = self._refresh
            except JwksError as error:
                _log.warning(
                    "JWKS refresh failed, keeping the last good keys: %s",
                    error,
                    extra={"event": "jwks_refresh_failed", "retry_seconds": self._retry},
                )
                wait = self._retry

    def _install(self, fetched: dict[str, SigningKey]) -> None:
        self._fetched_at = time.monotonic()
        keys = {**fetched, **self._fixed}
        if keys.keys() != self._keys.keys() or any(keys[kid] != self._keys[kid] for kid in keys):
            self._keys = keys
            self.generation += 1
            _log.info("JWKS keys now in use: %d", len(keys))

    def _fetch(self, url: str) -> dict[str, SigningKey]:
        """The URL's keys, or JwksError saying why not (the URL's host, never its query)."""
        where = f"JWKS at {urlsplit(url).netloc}"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked
        try:
            with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT) as answer:  # noqa: S310
                document = answer.read(_MAX_DOCUMENT_BYTES + 1)
        except OSError as error:
            raise JwksError(f"{where}: {getattr(error, 'reason', None) or error}") from None
        if len(document) > _MAX_DOCUMENT_BYTES:
            raise JwksError(f"{where}: larger than {_MAX_DOCUMENT_BYTES} bytes")
        return keys_of_jwks(document, self._algorithms, where)
