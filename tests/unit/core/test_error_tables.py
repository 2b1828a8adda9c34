"""The two error tables, without a server: domain error -> gRPC status (onnet_server.api.status)
and gRPC status -> SDK exception (onnet._errors), each alone and end to end.

docs/protocol.md "Errors": each refusal has one code, its field in a google.rpc.BadRequest
and, for a quota that waiting helps, the wait in a google.rpc.RetryInfo; the SDK raises one
exception class per code, with ``.field``, ``.reason`` and ``.retry_after`` read back.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

import onnet
import onnet_server
from onnet import _errors
from onnet_server.api.status import STATUS_OF, status_of
from onnet_server.core.call_rate import RateLimited
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
    UnknownAccount,
)

EXPECTED: dict[type[DomainError], tuple[int, type[onnet.ServiceError]]] = {
    InvalidArgument: (code_pb2.INVALID_ARGUMENT, onnet.InvalidArgumentError),
    DeadlineExceeded: (code_pb2.DEADLINE_EXCEEDED, onnet.DeadlineExceededError),
    NotFound: (code_pb2.NOT_FOUND, onnet.NotFoundError),
    StoreUnavailable: (code_pb2.UNAVAILABLE, onnet.UnavailableError),
    ServiceBusy: (code_pb2.UNAVAILABLE, onnet.UnavailableError),
    Unauthenticated: (code_pb2.UNAUTHENTICATED, onnet.AuthenticationError),
    PermissionDenied: (code_pb2.PERMISSION_DENIED, onnet.PermissionDeniedError),
    UnknownAccount: (code_pb2.PERMISSION_DENIED, onnet.PermissionDeniedError),
    QuotaExceeded: (code_pb2.RESOURCE_EXHAUSTED, onnet.QuotaExceededError),
    RateLimited: (code_pb2.RESOURCE_EXHAUSTED, onnet.QuotaExceededError),
}
"""Each domain error's code (docs/protocol.md "Errors") and the SDK class it arrives as."""

STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}
"""grpc.StatusCode by its number (google.rpc.Code numbers them alike)."""


def subclasses(cls: type[DomainError]) -> Iterator[type[DomainError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


def every_domain_error() -> set[type[DomainError]]:
    """Every subclass of DomainError the server defines, wherever it lives."""
    for module in pkgutil.walk_packages(onnet_server.__path__, "onnet_server."):
        importlib.import_module(module.name)
    return set(subclasses(DomainError))


def made(kind: type[DomainError], field: str = "hashes", reason: str = "no good") -> DomainError:
    """An instance of ``kind``, with a wait when it takes one."""
    if issubclass(kind, QuotaExceeded):
        return kind(field, reason, 2.5)
    return kind(field, reason)


class ReceivedError(grpc.RpcError):
    """What a stub raises on a refused call: its code, its message, its trailing metadata."""

    def __init__(
        self, code: grpc.StatusCode, details: str, metadata: Sequence[tuple[str, Any]] = ()
    ) -> None:
        super().__init__(details)
        self._code, self._details, self._metadata = code, details, tuple(metadata)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:  # key-value pairs (the stubs say objects)
        return self._metadata


def sent(error: DomainError) -> ReceivedError:
    """``error`` as the server's status puts it on the wire and a client receives it."""
    status = rpc_status.to_status(status_of(error))
    return ReceivedError(status.code, status.details, status.trailing_metadata)


# The server's table


def test_every_domain_error_the_server_defines_has_its_documented_code() -> None:
    assert every_domain_error() == set(EXPECTED), "a new DomainError needs a row in EXPECTED"


@pytest.mark.parametrize("kind", list(EXPECTED), ids=lambda kind: kind.__name__)
def test_each_domain_error_maps_to_its_code(kind: type[DomainError]) -> None:
    assert status_of(made(kind)).code == EXPECTED[kind][0]


def test_the_table_names_only_the_bases() -> None:
    """Subclasses map as their base does, so the table stays one row per code family."""
    assert UnknownAccount not in STATUS_OF
    assert RateLimited not in STATUS_OF
    assert set(STATUS_OF) == set(EXPECTED) - {UnknownAccount, RateLimited}


def test_a_refusal_names_its_field_in_a_bad_request_detail() -> None:
    status = status_of(InvalidArgument("previous_hashes", "needs the token that covers them"))
    assert status.message == "previous_hashes: needs the token that covers them"
    (detail,) = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("previous_hashes", "needs the token that covers them")
    ]


def test_a_refusal_without_a_field_has_no_detail() -> None:
    status = status_of(ServiceBusy("", "the server is busy; retry shortly"))
    assert (status.code, status.message) == (
        code_pb2.UNAVAILABLE,
        "the server is busy; retry shortly",
    )
    assert list(status.details) == []


@pytest.mark.parametrize(
    ("retry_after", "nanoseconds"), [(2.5, 2_500_000_000), (1e-10, 1), (0.0, 0)]
)
def test_a_quota_refusal_carries_its_wait_rounded_up(retry_after: float, nanoseconds: int) -> None:
    status = status_of(QuotaExceeded("hashes", "quota exhausted", retry_after))
    retries = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    (detail,) = retries
    retry = error_details_pb2.RetryInfo()
    detail.Unpack(retry)
    assert retry.retry_delay.ToNanoseconds() == nanoseconds


def test_a_quota_refusal_that_waiting_cannot_help_has_no_wait() -> None:
    status = status_of(QuotaExceeded("hashes", "exceed the whole quota", None))
    assert [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)] == []


# The SDK's table


def test_every_code_the_server_sends_has_its_own_sdk_class() -> None:
    for code in {code for code, _ in EXPECTED.values()}:
        assert STATUS_CODES[code] in _errors._BY_CODE, STATUS_CODES[code]


def test_every_sdk_service_error_is_reachable_from_some_code() -> None:
    every = {
        member
        for name in onnet.__all__
        if isinstance(member := getattr(onnet, name), type)
        and issubclass(member, onnet.ServiceError)
    }
    assert every == {*_errors._BY_CODE.values(), onnet.InternalServiceError, onnet.ServiceError}


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS],
    ids=lambda code: code.name,
)
def test_any_other_code_is_an_internal_service_error(code: grpc.StatusCode) -> None:
    error = _errors.from_rpc_error(ReceivedError(code, "internal error"))
    assert type(error) is onnet.InternalServiceError
    assert (error.code, error.reason, error.field) == (code, "internal error", "")


def test_a_status_without_details_has_no_field_and_no_wait() -> None:
    plain = ReceivedError(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max")
    error = _errors.from_rpc_error(plain)
    assert isinstance(error, onnet.QuotaExceededError)
    assert (error.field, error.retry_after) == ("", None)


def test_details_that_contradict_the_status_are_ignored() -> None:
    """grpc_status refuses details of another code: the SDK keeps the code, drops the field."""
    honest = sent(InvalidArgument("hashes", "no good"))
    error = _errors.from_rpc_error(
        ReceivedError(grpc.StatusCode.NOT_FOUND, honest.details(), honest.trailing_metadata())
    )
    assert (type(error), error.field) == (onnet.NotFoundError, "")


# End to end: what the server raises is what the SDK raises


@pytest.mark.parametrize("kind", list(EXPECTED), ids=lambda kind: kind.__name__)
def test_each_domain_error_arrives_as_its_sdk_class(kind: type[DomainError]) -> None:
    raised = made(kind, "blinded_elements", "element 3 is not a canonical element")
    error = _errors.from_rpc_error(sent(raised))
    assert type(error) is EXPECTED[kind][1]
    assert error.code == STATUS_CODES[EXPECTED[kind][0]]
    assert error.field == "blinded_elements"
    assert error.reason == "blinded_elements: element 3 is not a canonical element"
    if isinstance(error, onnet.QuotaExceededError):
        assert error.retry_after == 2.5


def test_a_refusal_without_a_field_arrives_without_one() -> None:
    error = _errors.from_rpc_error(sent(UnknownAccount("", "the calling account is unknown")))
    assert (type(error), error.field) == (onnet.PermissionDeniedError, "")


def test_a_quota_that_waiting_cannot_help_arrives_without_a_wait() -> None:
    error = _errors.from_rpc_error(sent(QuotaExceeded("hashes", "exceed the whole quota", None)))
    assert isinstance(error, onnet.QuotaExceededError)
    assert (error.field, error.retry_after) == ("hashes", None)
