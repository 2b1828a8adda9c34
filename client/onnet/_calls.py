"""One typed call per RPC, with a deadline, metadata and retries of UNAVAILABLE.

This is the lower layer of the SDK: it speaks protobuf messages and raises the SDK's own
exceptions (``onnet._errors``). The friendly clients in ``onnet._client`` sit on top of it.
When the application traces with OpenTelemetry, each call (its retries included) is one
CLIENT span whose context goes to the server in the call's metadata (``onnet._tracing``).
The tries of a call are one flow (``onnet._retry``), which a blocking and an asyncio
invoker drive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Generic, TypeVar

import grpc
from grpc import aio

from onnet._errors import from_rpc_error
from onnet._flow import run, run_async
from onnet._retry import NO_RETRY, Attempt, RetryPolicy, attempts
from onnet._tracing import client_span
from onnet.v1 import discovery_pb2, discovery_pb2_grpc, registry_pb2, registry_pb2_grpc

__all__ = [
    "AsyncDiscoveryCalls",
    "AsyncRegistryCalls",
    "DiscoveryCalls",
    "RegistryCalls",
]

Metadata = Sequence[tuple[str, str | bytes]]
_Response = TypeVar("_Response")
_DISCOVERY = discovery_pb2.DESCRIPTOR.services_by_name["Discovery"].full_name
_REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name
_RETRIED = RetryPolicy()
# Writes are not retried unless asked: a lost reply cannot be told from a lost request.
_WRITES = frozenset({"Register", "Unregister", "Block", "Unblock"})


class _Invoker:
    """Calls the methods of one service: deadline, metadata, retries, and a span if traced."""

    def __init__(
        self, service: str, timeout: float, metadata: Metadata, retry: RetryPolicy | None
    ) -> None:
        self.service = service
        self.timeout = timeout
        self.metadata = tuple(metadata)
        self.retry = retry

    def policy(self, name: str) -> RetryPolicy:
        """The retry policy of method ``name``: the one asked for, else its default."""
        if self.retry is not None:
            return self.retry
        return NO_RETRY if name in _WRITES else _RETRIED

    def traced(
        self, name: str
    ) -> tuple[AbstractContextManager[object], tuple[tuple[str, str | bytes], ...]]:
        """The span of a call to ``name``, and the metadata that carries its context.

        The span does nothing when the application does not trace.
        """
        span = client_span(self.service, name, self.metadata)
        if span is None:
            return contextlib.nullcontext(), self.metadata
        return span, span.metadata


class _SyncInvoker(_Invoker):
    """Drives the tries of a call over a blocking channel."""

    def __call__(
        self,
        name: str,
        method: Callable[..., _Response],
        request: object,
        timeout: float | None,
    ) -> _Response:
        span, metadata = self.traced(name)

        def attempt(step: Attempt) -> _Response:
            if step.backoff is not None:
                time.sleep(step.backoff)
            return method(
                request,
                timeout=timeout or self.timeout,
                metadata=metadata,
                wait_for_ready=step.wait_for_ready,
            )

        tries: Generator[Attempt, _Response, _Response] = attempts(self.policy(name))
        with span:
            return run(tries, attempt)


class _AsyncInvoker(_Invoker):
    """Drives the tries of a call over a grpc.aio channel."""

    async def __call__(
        self,
        name: str,
        method: Callable[..., Awaitable[_Response]],
        request: object,
        timeout: float | None,
    ) -> _Response:
        span, metadata = self.traced(name)

        async def attempt(step: Attempt) -> _Response:
            if step.backoff is not None:
                await asyncio.sleep(step.backoff)
            return await method(
                request,
                timeout=timeout or self.timeout,
                metadata=metadata,
                wait_for_ready=step.wait_for_ready,
            )

        tries: Generator[Attempt, _Response, _Response] = attempts(self.policy(name))
        with span:
            return await run_async(tries, attempt)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """A streaming call's errors, as the SDK's own."""
    try:
        yield
    except grpc.RpcError as error:
        raise from_rpc_error(error) from error


_ChannelT = TypeVar("_ChannelT", grpc.Channel, aio.Channel)
_InvokerT = TypeVar("_InvokerT", _SyncInvoker, _AsyncInvoker)


class _Calls(Generic[_ChannelT, _InvokerT]):
    """How each calls class is made: its service's stub over a channel, and an invoker."""

    _service: ClassVar[str]
    """The service's full name."""
    _stub_type: ClassVar[type[Any]]
    """The service's generated stub (blocking or asyncio by the channel it is given)."""
    _invoker_type: type[_InvokerT]

    def __init__(
        self,
        channel: _ChannelT,
        *,
        timeout: float = 10.0,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        """Call the service over ``channel``.

        Each call has the deadline ``timeout`` (seconds) unless it names its own, and carries
        ``metadata``; ``retry``, if given, replaces every default policy (see the class).
        """
        self._stub = self._stub_type(channel)
        self._invoke: _InvokerT = self._invoker_type(self._service, timeout, metadata, retry)


class DiscoveryCalls(_Calls[grpc.Channel, _SyncInvoker]):
    """The Discovery service's RPCs over a blocking channel."""

    _service = _DISCOVERY
    _stub_type = discovery_pb2_grpc.DiscoveryStub
    _invoker_type = _SyncInvoker
    _stub: discovery_pb2_grpc.DiscoveryStub

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


class AsyncDiscoveryCalls(_Calls[aio.Channel, _AsyncInvoker]):
    """The Discovery service's RPCs over a grpc.aio channel."""

    _service = _DISCOVERY
    _stub_type = discovery_pb2_grpc.DiscoveryStub
    _invoker_type = _AsyncInvoker
    _stub: discovery_pb2_grpc.DiscoveryAsyncStub

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


class RegistryCalls(_Calls[grpc.Channel, _SyncInvoker]):
    """The Registry service's RPCs over a blocking channel.

    Writes are not retried unless asked (a lost reply cannot be told from a lost request);
    Lookup and Screen are.
    """

    _service = _REGISTRY
    _stub_type = registry_pb2_grpc.RegistryStub
    _invoker_type = _SyncInvoker
    _stub: registry_pb2_grpc.RegistryStub

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
        return self._invoke("Lookup", self._stub.Lookup, request, timeout)

    def screen(
        self, request: registry_pb2.ScreenRequest, *, timeout: float | None = None
    ) -> registry_pb2.ScreenResponse:
        """Registry.Screen (retried on UNAVAILABLE: it only reads)."""
        return self._invoke("Screen", self._stub.Screen, request, timeout)

    def import_users(
        self, batches: Iterator[registry_pb2.ImportBatch], *, timeout: float | None = None
    ) -> Iterator[registry_pb2.ImportProgress]:
        """Registry.ImportUsers: one progress message per batch, in order (never retried).

        ``timeout`` bounds the whole stream; None means no deadline, since an import of
        millions of rows takes minutes.
        """
        span, metadata = self._invoke.traced("ImportUsers")
        responses = self._stub.ImportUsers(batches, timeout=timeout, metadata=metadata)
        with span, _translated():
            yield from responses


class AsyncRegistryCalls(_Calls[aio.Channel, _AsyncInvoker]):
    """The Registry service's RPCs over a grpc.aio channel (retries as RegistryCalls)."""

    _service = _REGISTRY
    _stub_type = registry_pb2_grpc.RegistryStub
    _invoker_type = _AsyncInvoker
    _stub: registry_pb2_grpc.RegistryAsyncStub

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
        return await self._invoke("Lookup", self._stub.Lookup, request, timeout)

    async def screen(
        self, request: registry_pb2.ScreenRequest, *, timeout: float | None = None
    ) -> registry_pb2.ScreenResponse:
        """Registry.Screen (retried on UNAVAILABLE: it only reads)."""
        return await self._invoke("Screen", self._stub.Screen, request, timeout)

    async def import_users(
        self, batches: AsyncIterator[registry_pb2.ImportBatch], *, timeout: float | None = None
    ) -> AsyncIterator[registry_pb2.ImportProgress]:
        """Registry.ImportUsers: one progress message per batch, in order (never retried)."""
        span, metadata = self._invoke.traced("ImportUsers")
        call = self._stub.ImportUsers(batches, timeout=timeout, metadata=metadata)
        with span, _translated():
            async for progress in call:
                yield progress
