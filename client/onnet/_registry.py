"""The Registry's calls as flows (no I/O here): the requests to send, the answers read back.

RegistryClient and AsyncRegistryClient drive these; bulk imports stream instead
(``onnet._importing``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from onnet._errors import ProtocolError
from onnet._rpc import BLOCK, LOOKUP, REGISTER, SCREEN, UNBLOCK, UNREGISTER, Flow, ask
from onnet.v1 import registry_pb2

__all__ = [
    "RegisterResult",
    "Verdict",
    "block",
    "lookup",
    "register",
    "screen",
    "unblock",
    "unregister",
]


@dataclass(frozen=True)
class RegisterResult:
    """The outcome of a registration."""

    updated: bool
    """True when the user was already registered (perhaps under another number)."""
    displaced_user_id: str
    """The user who held this number before and lost it; empty if none."""


class Verdict(enum.Enum):
    """Registry.Screen's answer: may the caller ring the callee."""

    ALLOWED = "allowed"
    """The callee has not blocked the caller's number."""
    BLOCKED = "blocked"
    """The callee blocked the caller's number: do not ring."""


def register(user_id: str, e164: str, *, discoverable: bool) -> Flow[RegisterResult]:
    """Register ``user_id`` at ``e164``, or move them there."""
    request = registry_pb2.RegisterRequest(user_id=user_id, e164=e164, discoverable=discoverable)
    response = yield from ask(REGISTER, request)
    return RegisterResult(response.updated, response.displaced_user_id)


def unregister(user_id: str) -> Flow[None]:
    """Erase ``user_id``."""
    yield from ask(UNREGISTER, registry_pb2.UnregisterRequest(user_id=user_id))


def block(user_id: str, e164: str) -> Flow[bool]:
    """Add ``e164`` to ``user_id``'s blocklist: whether it changed."""
    response = yield from ask(BLOCK, registry_pb2.BlockRequest(user_id=user_id, e164=e164))
    return response.changed


def unblock(user_id: str, e164: str) -> Flow[bool]:
    """Take ``e164`` off ``user_id``'s blocklist: whether it changed."""
    response = yield from ask(UNBLOCK, registry_pb2.BlockRequest(user_id=user_id, e164=e164))
    return response.changed


def lookup(numbers: Sequence[str]) -> Flow[list[str | None]]:
    """The user holding each of ``numbers`` (E.164), or None."""
    response = yield from ask(LOOKUP, registry_pb2.LookupRequest(e164=numbers))
    return _holders(response, len(numbers))


def screen(caller_e164: str, callee_user_id: str) -> Flow[Verdict]:
    """Whether ``caller_e164`` may ring ``callee_user_id``."""
    request = registry_pb2.ScreenRequest(caller_e164=caller_e164, callee_user_id=callee_user_id)
    return _verdict((yield from ask(SCREEN, request)))


def _holders(response: registry_pb2.LookupResponse, asked: int) -> list[str | None]:
    if len(response.user_ids) != asked:
        raise ProtocolError("malformed LookupResponse: not one user id per number asked")
    return [user_id or None for user_id in response.user_ids]


def _verdict(response: registry_pb2.ScreenResponse) -> Verdict:
    if response.verdict == registry_pb2.VERDICT_BLOCKED:
        return Verdict.BLOCKED
    if response.verdict == registry_pb2.VERDICT_ALLOWED:
        return Verdict.ALLOWED
    raise ProtocolError("malformed ScreenResponse: a verdict this SDK does not know")
