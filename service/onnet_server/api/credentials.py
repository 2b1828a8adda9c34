"""Credentials are JSON Web Tokens (RFC 7519), checked as RFC 8725 asks, with PyJWT.

Whoever issues them (the company's identity provider or account service) signs them with a
key of its JWKS (``onnet_server.api.jwks``); onnet holds only the public keys, so a leaked
server cannot mint credentials, and verifying needs no call to the issuer. What a
credential must say (docs/protocol.md, "Credentials"):

- header: ``alg`` one of the configured algorithms and the one its key's type verifies;
  ``kid`` naming a key of the JWKS;
- ``iss`` and ``aud``: the configured issuer, and the configured audience (or a list that
  holds it);
- ``sub``: the user id of an account, or a service's name (1 to 64 printable ASCII);
- the kind claim (``onnet_kind`` unless configured otherwise): ``account`` or ``service``;
- ``iat`` and ``exp``, with ``exp - iat`` at most the maximum lifetime (a stolen credential
  expires soon); ``nbf`` if present. Times allow 60 s of clock skew.

A refusal says why in words safe to return and to log: never the token, its subject, or
anything else read from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from onnet.protocol import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DEFAULT_MAX_LIFETIME,
    KIND_ACCOUNT,
    KIND_CLAIM,
    KIND_SERVICE,
    MAX_SUBJECT_LENGTH,
    MAX_TOKEN_LENGTH,
)
from onnet_server.api.jwks import KeySet

__all__ = ["Credential", "CredentialError", "CredentialPolicy", "CredentialVerifier"]

_KINDS = frozenset({KIND_ACCOUNT, KIND_SERVICE})
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))
_REQUIRED = ["exp", "iat", "iss", "aud", "sub"]


@dataclass(frozen=True)
class Credential:
    """What a verified token says about its bearer."""

    subject: str
    """The account's user id or the service's name (``sub``)."""
    kind: str
    """``KIND_ACCOUNT`` or ``KIND_SERVICE``."""
    expires_at: int
    """Unix time (seconds) at which the token stops being accepted, leeway aside."""


class CredentialError(ValueError):
    """A token was refused; the message says why without quoting the token."""


@dataclass(frozen=True)
class CredentialPolicy:
    """What a credential must say besides its signature."""

    issuer: str = DEFAULT_ISSUER
    """The ``iss`` every credential must carry (ONNET_AUTH_ISSUER)."""
    audience: str = DEFAULT_AUDIENCE
    """The ``aud`` every credential must carry (ONNET_AUTH_AUDIENCE)."""
    kind_claim: str = KIND_CLAIM
    """The claim that says ``account`` or ``service`` (ONNET_AUTH_KIND_CLAIM)."""
    max_lifetime: int = DEFAULT_MAX_LIFETIME
    """Longest ``exp - iat`` accepted, in seconds (ONNET_MAX_CREDENTIAL_LIFETIME)."""
    leeway: int = 60
    """Seconds of clock skew allowed with the issuer."""


class CredentialVerifier:
    """Verifies JWTs against a KeySet and a CredentialPolicy, with no network call."""

    def __init__(
        self,
        keys: KeySet,
        policy: CredentialPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Trust ``keys``; check claims against ``policy``; ``clock`` gives unix seconds."""
        self.keys = keys
        self._policy = policy or CredentialPolicy()
        if self._policy.max_lifetime <= 0:
            raise ValueError("the maximum credential lifetime must be positive")
        self._clock = clock

    def verify(self, token: str) -> Credential:
        """Return the credential ``token`` carries, or raise CredentialError saying why not."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise CredentialError(f"token is longer than {MAX_TOKEN_LENGTH} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:  # not a JWT, a crit header, a kid that is no string
            raise CredentialError("token is not a JWT onnet accepts (its header)") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in self.keys.algorithms:
            raise CredentialError(
                f"token algorithm is not one of the configured {', '.join(self.keys.algorithms)}"
            )
        if not isinstance(kid, str):
            raise CredentialError("token header names no key (kid)")
        key = self.keys.get(kid, algorithm)
        if key is None:
            # The key decides its algorithm, never the token (RFC 8725 section 3.1).
            known = self.keys.knows(kid)
            raise CredentialError(
                "token algorithm does not match its key"
                if known
                else "token is signed by an unknown key"
            )
        policy = self._policy
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=policy.audience,
                issuer=policy.issuer,
                leeway=policy.leeway,
                # The times are checked below against this verifier's clock.
                options={
                    "require": _REQUIRED,
                    "enforce_minimum_key_length": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise CredentialError("token audience is not this service's") from None
        except jwt.InvalidIssuerError:
            raise CredentialError("token issuer is not the configured one") from None
        except jwt.MissingRequiredClaimError as error:
            raise CredentialError(f"token lacks the {error.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise CredentialError("token signature is invalid") from None
        except jwt.InvalidTokenError:
            raise CredentialError("token is malformed") from None
        return self._credential(claims)

    def _credential(self, claims: dict[str, Any]) -> Credential:
        """The credential in claims whose signature, issuer, audience and times verified."""
        policy = self._policy
        issued_at, expires_at = claims["iat"], claims["exp"]
        # bool is an int subclass; a JSON true is not a time. PyJWT accepts float times.
        if not all(type(t) is int for t in (issued_at, expires_at)) or expires_at <= issued_at:
            raise CredentialError("token times (iat, exp) are malformed")
        if expires_at - issued_at > policy.max_lifetime:
            raise CredentialError(
                f"token lifetime exceeds the maximum of {policy.max_lifetime} s; "
                "ask the issuer for a shorter-lived one"
            )
        now = self._clock()
        if issued_at > now + policy.leeway:
            raise CredentialError("token was issued in the future")
        if now >= expires_at + policy.leeway:
            raise CredentialError("token expired")
        not_before = claims.get("nbf", issued_at)
        if type(not_before) is not int:
            raise CredentialError("token time nbf is malformed")
        if not_before > now + policy.leeway:
            raise CredentialError("token is not valid yet (nbf)")
        kind = claims.get(policy.kind_claim)
        if not isinstance(kind, str) or kind not in _KINDS:
            raise CredentialError(
                f"token claim {policy.kind_claim} must be {KIND_ACCOUNT!r} or {KIND_SERVICE!r}"
            )
        subject = claims["sub"]
        if not isinstance(subject, str) or not is_valid_subject(subject):
            raise CredentialError(
                f"token subject is not 1 to {MAX_SUBJECT_LENGTH} printable ASCII characters"
            )
        return Credential(subject=subject, kind=kind, expires_at=expires_at)


def is_valid_subject(subject: str) -> bool:
    """Whether ``subject`` is 1 to 64 characters of printable ASCII (like a user id)."""
    return 0 < len(subject) <= MAX_SUBJECT_LENGTH and _PRINTABLE_ASCII.issuperset(subject)
