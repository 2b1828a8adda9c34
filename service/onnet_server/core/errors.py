"""Domain errors. The servicer maps each to one gRPC status code through a single table."""

from __future__ import annotations

__all__ = [
    "DeadlineExceeded",
    "DomainError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "QuotaExceeded",
    "ServiceBusy",
    "StoreUnavailable",
    "Unauthenticated",
]


class DomainError(Exception):
    """Base of the errors the core raises on purpose.

    ``field`` names the request field at fault (or is empty); ``reason`` says why. Neither
    ever contains a number, a hash or any other value that a client sent.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class DeadlineExceeded(DomainError):
    """The call took longer than the server allows (its request did not arrive in time)."""


class InvalidArgument(DomainError):
    """A request field is malformed, too large, or otherwise unacceptable."""


class NotFound(DomainError):
    """The request names something (a user) that does not exist."""


class StoreUnavailable(DomainError):
    """The registry store cannot be reached; the call may be retried."""


class ServiceBusy(DomainError):
    """The server has no room for this work now; the call may be retried shortly."""


class Unauthenticated(DomainError):
    """The call carries no credential, or one that does not verify (or has expired)."""


class PermissionDenied(DomainError):
    """The credential is valid, but of a kind that may not call this service."""


class UnknownAccount(PermissionDenied):
    """The credential is valid, but the registry does not know its account (as yet)."""


class QuotaExceeded(DomainError):
    """The account asked about more new numbers than its quota allows now.

    ``retry_after`` is the number of seconds until the request would fit, or None when it
    never will (the request alone is larger than the whole quota).
    """

    def __init__(self, field: str, reason: str, retry_after: float | None) -> None:
        super().__init__(field, reason)
        self.retry_after = retry_after
