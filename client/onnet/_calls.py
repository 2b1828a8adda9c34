"""One typed call per RPC, with a deadline, metadata and retries of UNAVAILABLE.

This is the lower layer of the SDK: it speaks protobuf messages and raises the SDK's own
exceptions (``onnet._errors``). The friendly clients in ``onnet._client`` sit on top of it.
When the application traces with OpenTelemetry, each call (its retries included) is one
CLIENT span whose context goes to the server in the call's metadata (``onnet._tracing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc import aio

from onnet._errors import from_rpc_error
from onnet._tracing import client_span
from onnet.v1 import discovery_pb2, discovery_pb2_grpc, registry_pb2, registry_pb2_grpc

__all__ = [
    "AsyncDiscoveryCalls",
    "AsyncRegistryCalls",
    "DiscoveryCalls",
    "RegistryCalls",
    "RetryPolicy",
]

Metadata = Sequence[tuple[str, str | bytes]]
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_DISCOVERY = discovery_pb2.DESCRIPTOR.services_by_name["Discovery"].full_name
_REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name


@dataclass(frozen=True)
class RetryPolicy:
    """How calls that failed with UNAVAILABLE are retried: exponential backoff, full jitter."""

    attempts: int = 4
    """Tries in all, the first included; 1 disables retries."""
    initial_backoff: float = 0.1
    """Seconds before the first retry, at most (the wait is drawn uniformly below it)."""
    max_backoff: float = 2.0
    """The ceiling of any one wait, in seconds."""
    multiplier: float = 2.0
    """Growth of the ceiling from one retry to the next."""

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), with full jitter."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        # Jitter spreads clients that lost the same server so they do not return in lockstep.
        return random.uniform(0, ceiling)  # noqa: S311 - not a secret


NO_RETRY = RetryPolicy(attempts=1)
"""For calls whose retry could mislead: a Register or Unregister whose reply was lost cannot be
told apart from one that never arrived (a retried Unregister would say NOT_FOUND)."""


def _code(error: grpc.RpcError) -> grpc.StatusCode | None:
    # grpc.aio's AioRpcError is not a grpc.Call, but has the same code() method.
    code: grpc.StatusCode | None = getattr(error, "code", lambda: None)()
    return code


def _should_retry(error: grpc.RpcError, policy: RetryPolicy, attempt: int) -> bool:
    return _code(error) == grpc.StatusCode.UNAVAILABLE and attempt + 1 < policy.attempts


def _final_error(error: grpc.RpcError, previous: grpc.RpcError | None) -> grpc.RpcError:
    """The error to report for the last attempt.

    A retry that waited out its deadline for a server that was unavailable reports that
    server as unavailable, not the deadline.
    """
    if previous is not None and _code(error) == grpc.StatusCode.DEADLINE_EXCEEDED:
        return previous
    return error


class _SyncInvoker:
    """Calls the methods of one service: deadline, metadata, retries, and a span if traced."""

    def __init__(
        self, service: str, timeout: float, metadata: Metadata, retry: RetryPolicy
    ) -> None:
        self.service = service
        self.timeout = timeout
        self.metadata = tuple(metadata)
        self.retry = retry

    def __call__(
        self,
        name: str,
        method: Callable[..., _Response],
        request: object,
        timeout: float | None,
    ) -> _Response:
        span = client_span(self.service, name, self.metadata)
        if span is None:  # the application does not trace
            return self._attempts(method, request, timeout, self.metadata)
        with span:
            return self._attempts(method, request, timeout, span.metadata)

    def _attempts(
        self,
        method: Callable[..., _Response],
        request: object,
        timeout: float | None,
        metadata: Metadata,
    ) -> _Response:
        unavailable: grpc.RpcError | None = None
        for attempt in range(self.retry.attempts):
            try:
                # After a failure, wait for the channel to reconnect (bounded by the deadline):
                # gRPC backs off reconnecting for about a second, and a plain retry inside that
                # window fails at once.
                return method(
                    request,
                    timeout=timeout or self.timeout,
                    metadata=metadata,
                    wait_for_ready=attempt > 0,
                )
            except grpc.RpcError as error:
                if not _should_retry(error, self.retry, attempt):
                    final = _final_error(error, unavailable)
                    raise from_rpc_error(final) from error
                unavailable = error
            time.sleep(self.retry.backoff(attempt))
        raise AssertionError("unreachable: the last attempt raises")


class _AsyncInvoker:
    """_SyncInvoker for grpc.aio."""

    def __init__(
        self, service: str, timeout: float, metadata: Metadata, retry: RetryPolicy
    ) -> None:
        self.service = service
        self.timeout = timeout
        self.metadata = tuple(metadata)
        self.retry = retry

    async def __call__(
        self,
        name: str,
        method: Callable[..., Awaitable[_Response]],
        request: object,
        timeout: float | None,
    ) -> _Response:
        span = client_span(self.service, name, self.metadata)
        if span is None:  # the application does not trace
            return await self._attempts(method, request, timeout, self.metadata)
        with span:
            return await self._attempts(method, request, timeout, span.metadata)

    async def _attempts(
        self,
        method: Callable[..., Awaitable[_Response]],
        request: object,
        timeout: float | None,
        metadata: Metadata,
    ) -> _Response:
        unavailable: grpc.RpcError | None = None
        for attempt in range(self.retry.attempts):
            try:
                return await method(
                    request,
                    timeout=timeout or self.timeout,
                    metadata=metadata,
                    wait_for_ready=attempt > 0,
                )
            except grpc.RpcError as error:
                if not _should_retry(error, self.retry, attempt):
                    final = _final_error(error, unavailable)
                    raise from_rpc_error(final) from error
                unavailable = error
            await asyncio.sleep(self.retry.backoff(attempt))
        raise AssertionError("unreachable: the last attempt raises")


class DiscoveryCalls:
    """The Discovery service's RPCs over a blocking channel."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        timeout: float = 10.0,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        self._stub = discovery_pb2_grpc.DiscoveryStub(channel)
        self._invoke = _SyncInvoker(_DISCOVERY, timeout, metadata, retry or RetryPolicy())

    def discover(
        self, request: discovery_pb2.DiscoverRequest, *, timeout: float | None = None
    ) -> discovery_pb2.DiscoverResponse:
        """Discovery.Discover."""
        return self._invoke("Discover", self._stub.Discover, request, timeout)

    def get_config(
        self, request: discovery_pb2.GetConfigRequest, *, timeout: float | None = None
    ) -> discovery_pb2.DiscoveryConfig:
        """Discovery.GetConfig."""
        return self._invoke("GetConfig", self._stub.GetConfig, request, timeout)

    def blind_evaluate(
        self, request: discovery_pb2.BlindEvaluateRequest, *, timeout: float | None = None
    ) -> discovery_pb2.BlindEvaluateResponse:
        """Discovery.BlindEvaluate."""
        return self._invoke("BlindEvaluate", self._stub.BlindEvaluate, request, timeout)

    def fetch_buckets(
        self, request: discovery_pb2.FetchBucketsRequest, *, timeout: float | None = None
    ) -> discovery_pb2.FetchBucketsResponse:
        """Discovery.FetchBuckets."""
        return self._invoke("FetchBuckets", self._stub.FetchBuckets, request, timeout)


class AsyncDiscoveryCalls:
    """The Discovery service's RPCs over a grpc.aio channel."""

    def __init__(
        self,
        channel: aio.Channel,
        *,
        timeout: float = 10.0,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        self._stub = discovery_pb2_grpc.DiscoveryStub(channel)
        self._invoke = _AsyncInvoker(_DISCOVERY, timeout, metadata, retry or RetryPolicy())

    async def discover(
        self, request: discovery_pb2.DiscoverRequest, *, timeout: float | None = None
    ) -> discovery_pb2.DiscoverResponse:
        """Discovery.Discover."""
        return await self._invoke("Discover", self._stub.Discover, request, timeout)

    async def get_config(
        self, request: discovery_pb2.GetConfigRequest, *, timeout: float | None = None
    ) -> discovery_pb2.DiscoveryConfig:
        """Discovery.GetConfig."""
        return await self._invoke("GetConfig", self._stub.GetConfig, request, timeout)

    async def blind_evaluate(
        self, request: discovery_pb2.BlindEvaluateRequest, *, timeout: float | None = None
    ) -> discovery_pb2.BlindEvaluateResponse:
        """Discovery.BlindEvaluate."""
        return await self._invoke("BlindEvaluate", self._stub.BlindEvaluate, request, timeout)

    async def fetch_buckets(
        self, request: discovery_pb2.FetchBucketsRequest, *, timeout: float | None = None
    ) -> discovery_pb2.FetchBucketsResponse:
        """Discovery.FetchBuckets."""
        return await self._invoke("FetchBuckets", self._stub.FetchBuckets, request, timeout)


class RegistryCalls:
    """The Registry service's RPCs over a blocking channel.

    Writes are not retried unless asked (a lost reply cannot be told from a lost request);
    Lookup and Screen are.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        timeout: float = 10.0,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        self._stub = registry_pb2_grpc.RegistryStub(channel)
        self._invoke = _SyncInvoker(_REGISTRY, timeout, metadata, retry or NO_RETRY)
        # Lookup and Screen only read: retrying them is always safe.
        self._read = _SyncInvoker(_REGISTRY, timeout, metadata, retry or RetryPolicy())

    def register(
        self, request: registry_pb2.RegisterRequest, *, timeout: float | None = None
    ) -> registry_pb2.RegisterResponse:
        """Registry.Register."""
        return self._invoke("Register", self._stub.Register, request, timeout)

    def unregister(
        self, request: registry_pb2.UnregisterRequest, *, timeout: float | None = None
    ) -> registry_pb2.UnregisterResponse:
        """Registry.Unregister."""
        return self._invoke("Unregister", self._stub.Unregister, request, timeout)

    def block(
        self, request: registry_pb2.BlockRequest, *, timeout: float | None = None
    ) -> registry_pb2.BlockResponse:
        """Registry.Block."""
        return self._invoke("Block", self._stub.Block, request, timeout)

    def unblock(
        self, request: registry_pb2.BlockRequest, *, timeout: float | None = None
    ) -> registry_pb2.BlockResponse:
        """Registry.Unblock."""
        return self._invoke("Unblock", self._stub.Unblock, request, timeout)

    def lookup(
        self, request: registry_pb2.LookupRequest, *, timeout: float | None = None
    ) -> registry_pb2.LookupResponse:
        """Registry.Lookup (retried on UNAVAILABLE: it only reads)."""
        return self._read("Lookup", self._stub.Lookup, request, timeout)

    def screen(
        self, request: registry_pb2.ScreenRequest, *, timeout: float | None = None
    ) -> registry_pb2.ScreenResponse:
        """Registry.Screen (retried on UNAVAILABLE: it only reads)."""
        return self._read("Screen", self._stub.Screen, request, timeout)

    def import_users(
        self, batches: Iterator[registry_pb2.ImportBatch], *, timeout: float | None = None
    ) -> Iterator[registry_pb2.ImportProgress]:
        """Registry.ImportUsers: one progress message per batch, in order (never retried).

        ``timeout`` bounds the whole stream; None means no deadline, since an import of
        millions of rows takes minutes.
        """
        span = client_span(_REGISTRY, "ImportUsers", self._invoke.metadata)
        metadata = self._invoke.metadata if span is None else span.metadata
        responses = self._stub.ImportUsers(batches, timeout=timeout, metadata=metadata)
        with span or contextlib.nullcontext():
            try:
                yield from responses
            except grpc.RpcError as error:
                raise from_rpc_error(error) from error


class AsyncRegistryCalls:
    """The Registry service's RPCs over a grpc.aio channel (retries as RegistryCalls)."""

    def __init__(
        self,
        channel: aio.Channel,
        *,
        timeout: float = 10.0,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        self._stub = registry_pb2_grpc.RegistryStub(channel)
        self._invoke = _AsyncInvoker(_REGISTRY, timeout, metadata, retry or NO_RETRY)
        # Lookup and Screen only read: retrying them is always safe.
        self._read = _AsyncInvoker(_REGISTRY, timeout, metadata, retry or RetryPolicy())

    async def register(
        self, request: registry_pb2.RegisterRequest, *, timeout: float | None = None
    ) -> registry_pb2.RegisterResponse:
        """Registry.Register."""
        return await self._invoke("Register", self._stub.Register, request, timeout)

    async def unregister(
        self, request: registry_pb2.UnregisterRequest, *, timeout: float | None = None
    ) -> registry_pb2.UnregisterResponse:
        """Registry.Unregister."""
        return await self._invoke("Unregister", self._stub.Unregister, request, timeout)

    async def block(
        self, request: registry_pb2.BlockRequest, *, timeout: float | None = None
    ) -> registry_pb2.BlockResponse:
        """Registry.Block."""
        return await self._invoke("Block", self._stub.Block, request, timeout)

    async def unblock(
        self, request: registry_pb2.BlockRequest, *, timeout: float | None = None
    ) -> registry_pb2.BlockResponse:
        """Registry.Unblock."""
        return await self._invoke("Unblock", self._stub.Unblock, request, timeout)

    async def lookup(
        self, request: registry_pb2.LookupRequest, *, timeout: float | None = None
    ) -> registry_pb2.LookupResponse:
        """Registry.Lookup (retried on UNAVAILABLE: it only reads)."""
        return await self._read("Lookup", self._stub.Lookup, request, timeout)

    async def screen(
        self, request: registry_pb2.ScreenRequest, *, timeout: float | None = None
    ) -> registry_pb2.ScreenResponse:
        """Registry.Screen (retried on UNAVAILABLE: it only reads)."""
        return await self._read("Screen", self._stub.Screen, request, timeout)

    async def import_users(
        self, batches: AsyncIterator[registry_pb2.ImportBatch], *, timeout: float | None = None
    ) -> AsyncIterator[registry_pb2.ImportProgress]:
        """Registry.ImportUsers: one progress message per batch, in order (never retried)."""
        span = client_span(_REGISTRY, "ImportUsers", self._invoke.metadata)
        metadata = self._invoke.metadata if span is None else span.metadata
        call = self._stub.ImportUsers(batches, timeout=timeout, metadata=metadata)
        with span or contextlib.nullcontext():
            try:
                async for progress in call:
                    yield progress
            except grpc.RpcError as error:
                raise from_rpc_error(error) from error
