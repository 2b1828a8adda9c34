"""Domain errors to gRPC statuses: the one table, used by every servicer."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status

from onnet_server.core.errors import (
    DeadlineExceeded,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    ServiceBusy,
    StoreUnavailable,
    Unauthenticated,
)

__all__ = [
    "STATUS_OF",
    "abort_for",
    "ended_with",
    "status_of",
    "translate_errors",
]

_log = logging.getLogger(__name__)

STATUS_OF: dict[type[DomainError], int] = {
    InvalidArgument: code_pb2.INVALID_ARGUMENT,
    DeadlineExceeded: code_pb2.DEADLINE_EXCEEDED,
    NotFound: code_pb2.NOT_FOUND,
    StoreUnavailable: code_pb2.UNAVAILABLE,
    ServiceBusy: code_pb2.UNAVAILABLE,
    Unauthenticated: code_pb2.UNAUTHENTICATED,
    PermissionDenied: code_pb2.PERMISSION_DENIED,
    QuotaExceeded: code_pb2.RESOURCE_EXHAUSTED,
}
"""The gRPC code of each domain error."""


def status_of(error: DomainError) -> status_pb2.Status:
    """The google.rpc.Status for ``error``: code, "field: reason", and the field as a detail.

    A quota refusal also carries a google.rpc.RetryInfo with the time to wait (absent when
    waiting cannot help).
    """
    # The nearest class in the table: a subclass (RateLimited is a QuotaExceeded) maps as
    # its base does.
    code = next(STATUS_OF[kind] for kind in type(error).__mro__ if kind in STATUS_OF)
    status = status_pb2.Status(code=code, message=str(error))
    if isinstance(error, QuotaExceeded) and error.retry_after is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(math.ceil(error.retry_after * 1e9))
        detail = any_pb2.Any()
        detail.Pack(retry)
        status.details.append(detail)
    if error.field:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.reason
        )
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        status.details.append(detail)
    return status


_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Servicer = TypeVar("_Servicer")
Handler = Callable[
    [_Servicer, _Request, aio.ServicerContext[_Request, _Response]], Awaitable[_Response]
]


def translate_errors(
    handler: Handler[_Servicer, _Request, _Response],
) -> Handler[_Servicer, _Request, _Response]:
    """Wrap an RPC handler so that domain errors end the call with their status.

    Anything unexpected becomes INTERNAL with a generic message; only the exception's type
    is logged, since its text could carry request data.
    """

    @functools.wraps(handler)
    async def wrapper(
        servicer: _Servicer, request: _Request, context: aio.ServicerContext[_Request, _Response]
    ) -> _Response:
        try:
            return await handler(servicer, request, context)
        except Exception as error:  # the boundary: nothing may escape unmapped
            await abort_for(error, context, handler.__name__)

    return wrapper


async def abort_for(
    error: Exception, context: aio.ServicerContext[Any, Any], method: str
) -> NoReturn:
    """End the call with ``error``'s status: its own for a domain error, else INTERNAL.

    For anything unexpected only the exception's type is logged, since its text could carry
    request data.
    """
    if isinstance(error, DomainError):
        await context.abort_with_status(rpc_status.to_status(status_of(error)))
    else:
        _log.error(
            "%s failed: internal error of type %s",
            method,
            type(error).__name__,
            extra={"event": "internal_error", "method": method, "error": type(error).__name__},
        )
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    raise AssertionError("unreachable: abort raises")


def ended_with(
    context: aio.ServicerContext[Any, Any], error: BaseException | None
) -> grpc.StatusCode:
    """The status a handler's call ended with: the one set on its context, else what ended it.

    ``error`` is what the handler raised, if anything (an abort raises too, having set the
    code on the context).
    """
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(error, asyncio.CancelledError):
        # The client went away or its deadline passed: gRPC cancelled the handler.
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN if error is not None else grpc.StatusCode.OK
