"""Who is calling: the bearer credential of each call, checked against the service it calls.

Discovering clients present an account credential; the Registry takes only a service
credential (or, when the server requires client certificates, a certificate whose common
name is on the configured list of trusted services). The credentials are JSON Web Tokens
signed by the company's issuer (``onnet_server.api.credentials``): verifying one needs only its
public keys (a JWKS), no network call. Nothing of a token is ever logged.

The header is parsed strictly: exactly one ``authorization`` value, exactly ``Bearer`` and one
space, then an ASCII token (base64url and dots). Anything else is refused rather than
repaired: a lenient parser that strips or re-cases accepts spellings no client sends, and
gRPC decodes invalid UTF-8 as Latin-1, whose 0x85 and 0xA0 Python's ``str.strip`` removes.

Which kind of credential each method needs is not decided here but in one table built from
the service descriptors (onnet_server.api.gate), so that no handler can forget to ask.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from onnet.protocol import KIND_SERVICE, MAX_TOKEN_LENGTH, METADATA_KEY
from onnet_server.api.credentials import Credential, CredentialError, CredentialVerifier
from onnet_server.core.errors import PermissionDenied, Unauthenticated

__all__ = ["DEV_SUBJECT", "Authenticator", "Caller"]

DEV_SUBJECT = "dev"
"""The caller a development server assumes for a call without a credential."""
_BEARER = "Bearer "
_TOKEN = re.compile(rf"[A-Za-z0-9._~+/=-]{{1,{MAX_TOKEN_LENGTH}}}")
_MALFORMED = "must be exactly 'Bearer ' and an ASCII token, once"
# Verified credentials, by a digest of the token: a client sends the same token on every
# call, and a signature verification costs more than a whole Lookup. Bounded; cleared whole
# when full (a flood of distinct tokens only costs verifications, never memory), and when
# the keys change (a key the issuer withdrew stops verifying at once).
_CACHE_SIZE = 65_536


@dataclass(frozen=True)
class Caller:
    """The verified caller of one call."""

    kind: str
    """``account`` (a discovering client) or ``service`` (a trusted service)."""
    subject: str
    """The account's user id, or the service's name."""


class Authenticator:
    """Checks each call's credential; in development mode a missing one is let through."""

    def __init__(
        self,
        verifier: CredentialVerifier | None,
        *,
        dev_mode: bool = False,
        service_names: Iterable[str] = (),
    ) -> None:
        """Verify with ``verifier`` (None: no keys, development mode only).

        ``service_names`` are client-certificate common names the Registry trusts as
        services without a token (mutual TLS).
        """
        if verifier is None and not dev_mode:
            raise ValueError("without keys to verify credentials, only development mode runs")
        self._verifier = verifier
        self._verified: dict[bytes, Credential] = {}
        self._generation = verifier.keys.generation if verifier is not None else 0
        self.dev_mode = dev_mode
        self._service_names = frozenset(service_names)

    async def keep_keys_current(self) -> None:
        """Keep the verifier's keys current (a JWKS URL's), until cancelled."""
        if self._verifier is not None:
            await self._verifier.keys.keep_current()

    def defers_to_peer(self, metadata: Iterable[Any], kind: str) -> bool:
        """Whether a call without a token may still be a service, by its client certificate.

        The certificate is known only once the call runs, so such a call is checked then.
        """
        return kind == KIND_SERVICE and bool(self._service_names) and not self._has_token(metadata)

    @staticmethod
    def _has_token(metadata: Iterable[Any]) -> bool:
        return any(key == METADATA_KEY for key, _ in metadata)

    def check(
        self,
        metadata: Sequence[tuple[str, str | bytes]] | Iterable[Any],
        kind: str,
        peer_name: str | None = None,
    ) -> Caller:
        """The caller named by ``metadata`` (and the peer's certificate), or raise.

        Unauthenticated: no credential, or one that does not verify. PermissionDenied: a
        valid credential of the other kind.
        """
        token = _bearer_token(metadata)
        if token is None:
            if kind == KIND_SERVICE and peer_name is not None and peer_name in self._service_names:
                return Caller(KIND_SERVICE, peer_name)
            if self.dev_mode:
                return Caller(kind, DEV_SUBJECT)
            raise Unauthenticated(
                METADATA_KEY,
                f"this call needs a credential ('{METADATA_KEY}: Bearer <token>' metadata)",
            )
        if self._verifier is None:  # development mode without keys: nothing to check with
            return Caller(kind, DEV_SUBJECT)
        credential = self._verify(token)
        if credential.kind != kind:
            raise PermissionDenied(
                METADATA_KEY,
                f"{_with_article(credential.kind)} credential may not call this service "
                f"(it needs {_with_article(kind)} credential)",
            )
        return Caller(credential.kind, credential.subject)

    def _verify(self, token: str) -> Credential:
        assert self._verifier is not None
        if self._verifier.keys.generation != self._generation:
            self._verified.clear()
            self._generation = self._verifier.keys.generation
        digest = hashlib.sha256(token.encode("ascii")).digest()
        known = self._verified.get(digest)
        if known is not None and time.time() < known.expires_at:
            return known
        try:
            credential = self._verifier.verify(token)
        except CredentialError as error:
            raise Unauthenticated(METADATA_KEY, f"credential refused: {error}") from None
        except Exception:  # a token no check foresaw is refused, never an internal error
            raise Unauthenticated(METADATA_KEY, "credential refused: token is malformed") from None
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        self._verified[digest] = credential
        return credential


def _bearer_token(metadata: Iterable[Any]) -> str | None:
    """The token of the call's one ``authorization: Bearer <token>`` value, or None."""
    token = None
    # grpc.aio gives (key, value) pairs (its Metadatum is a named tuple).
    for key, value in metadata:
        if key != METADATA_KEY:
            continue
        if token is not None or not isinstance(value, str) or not value.startswith(_BEARER):
            raise Unauthenticated(METADATA_KEY, _MALFORMED)
        token = value[len(_BEARER) :]
        if not _TOKEN.fullmatch(token):
            raise Unauthenticated(METADATA_KEY, _MALFORMED)
    return token


def _with_article(word: str) -> str:
    """``word`` after "a" or "an", as it is read: "an account", "a service"."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"
