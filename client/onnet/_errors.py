"""The SDK's exceptions, translated once from gRPC statuses.

OnnetError
├── InvalidNumberError        a raw entry has no certain E.164 form (raised by normalize)
├── AddressBookError          a file is not a readable address book
├── KeyFileError              a key file does not hold what it should
├── ProtocolError             the SDK found the server's answer or parameters unusable
│   └── OprfError             an OPRF element or proof that does not verify
└── ServiceError              the service answered with an error (.code, .field, .reason)
    ├── InvalidArgumentError  a request field was wrong (INVALID_ARGUMENT)
    ├── NotFoundError         no such user (NOT_FOUND)
    ├── QuotaExceededError    a quota or a limit (RESOURCE_EXHAUSTED); never retried
    ├── AuthenticationError   missing or bad credential (UNAUTHENTICATED)
    ├── PermissionDeniedError the credential may not call this (PERMISSION_DENIED)
    ├── UnavailableError      the service or its store is down, after retries (UNAVAILABLE)
    ├── DeadlineExceededError no answer within the deadline (DEADLINE_EXCEEDED)
    └── InternalServiceError  any other status the service answered with

A ServiceError carries a status the service sent; a ProtocolError is what the SDK itself
detected (a malformed answer, parameters it cannot use), never a made-up status.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = [
    "AuthenticationError",
    "DeadlineExceededError",
    "InternalServiceError",
    "InvalidArgumentError",
    "NotFoundError",
    "OnnetError",
    "PermissionDeniedError",
    "ProtocolError",
    "QuotaExceededError",
    "ServiceError",
    "UnavailableError",
    "from_rpc_error",
]


class OnnetError(Exception):
    """Base of every exception the SDK raises on purpose."""


class ProtocolError(OnnetError):
    """The server's answer, or the parameters it announced, are unusable.

    A malformed response, an unknown contact-hash version, no private mode: detected by the
    SDK itself, so no status was received. Upgrading the SDK, or asking the operator, is the
    remedy; retrying rarely is (the message says when it is).
    """


class ServiceError(OnnetError):
    """The service answered a call with an error status.

    ``field`` names the request field at fault when the server said so (from the
    google.rpc.BadRequest detail), else it is empty; ``reason`` is the server's message.
    """

    def __init__(self, code: grpc.StatusCode, reason: str, field: str = "") -> None:
        super().__init__(f"{code.name}: {reason}")
        self.code = code
        self.reason = reason
        self.field = field


class InvalidArgumentError(ServiceError):
    """A request field was wrong; ``field`` and ``reason`` say which and why."""


class NotFoundError(ServiceError):
    """The user named in the request is not registered."""


class QuotaExceededError(ServiceError):
    """RESOURCE_EXHAUSTED: a quota or a limit was exceeded.

    The account's quota of new numbers, a full blocklist, the account's call rate or calls
    in flight, or a message over the size limit.

    ``retry_after`` is how many seconds to wait before the same request would fit, when
    the server said (None: waiting will not help, e.g. a message too large or a request
    larger than the whole quota). The SDK never retries it.
    """

    def __init__(
        self, code: grpc.StatusCode, reason: str, field: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(code, reason, field)
        self.retry_after = retry_after


class AuthenticationError(ServiceError):
    """The call carried no credential, or one the service could not verify."""


class PermissionDeniedError(ServiceError):
    """The credential is valid but not for this service or method."""


class UnavailableError(ServiceError):
    """The service, or the store behind it, could not be reached (after retries)."""


class DeadlineExceededError(ServiceError):
    """The service did not answer within the deadline."""


class InternalServiceError(ServiceError):
    """Any other error status the service answered with (INTERNAL, UNKNOWN, ...)."""


_BY_CODE: dict[grpc.StatusCode, type[ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: QuotaExceededError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_rpc_error(error: grpc.RpcError) -> ServiceError:
    """Translate a grpc.RpcError (sync or aio) into the matching ServiceError."""
    # grpc.aio's AioRpcError is not a grpc.Call, but has the same code() and details().
    code = getattr(error, "code", lambda: grpc.StatusCode.UNKNOWN)()
    reason = getattr(error, "details", lambda: None)() or str(error)
    details = _details(error)
    field = _violated_field(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return QuotaExceededError(code, reason, field, _retry_after(details))
    return _BY_CODE.get(code, InternalServiceError)(code, reason, field)


def _details(error: grpc.RpcError) -> list[Any]:
    try:
        status = rpc_status.from_call(error)
    except (ValueError, AttributeError):
        return []
    return list(status.details) if status is not None else []


def _violated_field(details: list[Any]) -> str:
    for detail in details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            for violation in bad_request.field_violations:
                return str(violation.field)
    return ""


def _retry_after(details: list[Any]) -> float | None:
    for detail in details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            return float(retry.retry_delay.ToNanoseconds()) / 1e9
    return None
