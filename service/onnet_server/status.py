"""Domain errors to gRPC statuses: the one table, used by every servicer."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status

from onnet_server.core.errors import DomainError, InvalidArgument, NotFound, StoreUnavailable

__all__ = ["STATUS_OF", "status_of", "translate_errors"]

_log = logging.getLogger(__name__)

STATUS_OF: dict[type[DomainError], int] = {
    InvalidArgument: code_pb2.INVALID_ARGUMENT,
    NotFound: code_pb2.NOT_FOUND,
    StoreUnavailable: code_pb2.UNAVAILABLE,
}
"""The gRPC code of each domain error."""


def status_of(error: DomainError) -> status_pb2.Status:
    """The google.rpc.Status for ``error``: code, "field: reason", and the field as a detail."""
    status = status_pb2.Status(code=STATUS_OF[type(error)], message=str(error))
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
        except DomainError as error:
            await context.abort_with_status(rpc_status.to_status(status_of(error)))
        except Exception as error:  # the boundary: nothing may escape unmapped
            _log.error(
                "%s failed: internal error of type %s", handler.__name__, type(error).__name__
            )
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable: abort raises")

    return wrapper
