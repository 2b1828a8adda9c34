"""Domain errors. The servicer maps each to one gRPC status code through a single table."""

from __future__ import annotations

__all__ = ["DomainError", "InvalidArgument", "NotFound", "StoreUnavailable"]


class DomainError(Exception):
    """Base of the errors the core raises on purpose.

    ``field`` names the request field at fault (or is empty); ``reason`` says why. Neither
    ever contains a number, a hash or any other value that a client sent.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class InvalidArgument(DomainError):
    """A request field is malformed, too large, or otherwise unacceptable."""


class NotFound(DomainError):
    """The request names something (a user) that does not exist."""


class StoreUnavailable(DomainError):
    """The registry store cannot be reached; the call may be retried."""
