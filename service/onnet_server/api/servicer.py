"""Thin gRPC servicers: decode the request, call the core, encode the answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TypeAlias

from grpc import aio
from grpc_health.v1 import health, health_pb2

from onnet import ImportRow
from onnet.protocol import CONTACT_HASH_SIZE, ELEMENT_SIZE, oprf
from onnet.v1 import (
    bench_pb2_grpc,
    discovery_pb2,
    discovery_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from onnet_server.api.gate import current_caller
from onnet_server.api.metrics import Metrics
from onnet_server.api.status import abort_for, translate_errors
from onnet_server.api.wire import Encoded
from onnet_server.core.discovery import DiscoveryService
from onnet_server.core.private.service import PrivateDiscovery
from onnet_server.core.registry import RegistryService
from onnet_server.core.routing import RoutingService
from onnet_server.spans import annotate

__all__ = ["BenchServicer", "DiscoveryServicer", "HealthServicer", "RegistryServicer"]

# Counts and outcomes only: never a number, a hash, a token or a user id.
_log = logging.getLogger(__name__)

# Discover and FetchBuckets answer their responses in wire form (see wire.py).
DiscoverContext = aio.ServicerContext[discovery_pb2.DiscoverRequest, Encoded]
CeilingContext = aio.ServicerContext[discovery_pb2.DiscoverRequest, discovery_pb2.DiscoverResponse]
ConfigContext = aio.ServicerContext[discovery_pb2.GetConfigRequest, discovery_pb2.DiscoveryConfig]
FetchContext = aio.ServicerContext[discovery_pb2.FetchBucketsRequest, Encoded]
EvaluateContext = aio.ServicerContext[
    discovery_pb2.BlindEvaluateRequest, discovery_pb2.BlindEvaluateResponse
]
RegisterContext = aio.ServicerContext[registry_pb2.RegisterRequest, registry_pb2.RegisterResponse]
ImportContext = aio.ServicerContext[registry_pb2.ImportBatch, registry_pb2.ImportProgress]
UnregisterContext = aio.ServicerContext[
    registry_pb2.UnregisterRequest, registry_pb2.UnregisterResponse
]
BlockContext = aio.ServicerContext[registry_pb2.BlockRequest, registry_pb2.BlockResponse]
LookupContext = aio.ServicerContext[registry_pb2.LookupRequest, registry_pb2.LookupResponse]
ScreenContext = aio.ServicerContext[registry_pb2.ScreenRequest, registry_pb2.ScreenResponse]


def _items(metrics: Metrics, method: str, count: int) -> None:
    """Record how many items a call carries: in the metrics, and on its span if traced."""
    metrics.items(method, count)
    annotate("onnet.batch_size", count)


class DiscoveryServicer(discovery_pb2_grpc.DiscoveryServicer):
    """onnet.v1.Discovery over DiscoveryService; the gate admits accounts only."""

    def __init__(
        self, discovery: DiscoveryService, private: PrivateDiscovery, metrics: Metrics
    ) -> None:
        """Serve ``discovery`` and ``private`` mode to the accounts the gate admits."""
        self._discovery = discovery
        self._private = private
        self._metrics = metrics

    @translate_errors
    async def Discover(  # type: ignore[override]  # wire form: see wire.py
        self, request: discovery_pb2.DiscoverRequest, context: DiscoverContext
    ) -> Encoded:
        """Match a batch of contact hashes; the answer is written by the index (no object each)."""
        account = current_caller().subject
        # Each read of a bytes field copies it out of the message: read each once.
        hashes = request.hashes
        _items(self._metrics, "Discovery/Discover", len(hashes) // CONTACT_HASH_SIZE)
        answer = await self._discovery.discover(
            account,
            hashes,
            request.token,
            request.previous_hashes,
            added_hashes=request.added_hashes,
            removed_hashes=request.removed_hashes,
        )
        _log.debug(
            "Discover: %d hashes, %d matches", len(hashes) // CONTACT_HASH_SIZE, answer.match_count
        )
        return Encoded(answer.encoded)

    @translate_errors
    async def GetConfig(
        self, request: discovery_pb2.GetConfigRequest, context: ConfigContext
    ) -> discovery_pb2.DiscoveryConfig:
        """Announce the contact-hash version, the limits, and the caller's quota left."""
        account = current_caller().subject
        parameters = await self._discovery.parameters(account)
        buckets = self._private.buckets
        return discovery_pb2.DiscoveryConfig(
            contact_hash_version=parameters.contact_hash_version,
            max_batch=parameters.max_batch,
            max_previous=parameters.max_previous,
            max_message_bytes=parameters.max_message_bytes,
            quota_remaining=parameters.quota_remaining,
            oprf_suite=oprf.SUITE,
            oprf_key_id=self._private.evaluator.key.key_id,
            bucket_prefix_bits=buckets.prefix_bits(),
            max_buckets=buckets.max_buckets,
        )

    @translate_errors
    async def FetchBuckets(  # type: ignore[override]  # wire form: see wire.py
        self, request: discovery_pb2.FetchBucketsRequest, context: FetchContext
    ) -> Encoded:
        """Every entry of the asked buckets, as the index serialized them (no object each)."""
        account = current_caller().subject
        buckets = list(request.buckets)
        _items(self._metrics, "Discovery/FetchBuckets", len(buckets))
        answer = self._private.fetch(account, request.prefix_bits, buckets)
        _log.debug("FetchBuckets: %d buckets, %d bytes", len(set(buckets)), len(answer))
        return Encoded(answer)

    @translate_errors
    async def BlindEvaluate(
        self, request: discovery_pb2.BlindEvaluateRequest, context: EvaluateContext
    ) -> discovery_pb2.BlindEvaluateResponse:
        """Apply the OPRF key to blinded elements."""
        account = current_caller().subject
        blinded = request.blinded_elements  # a bytes field is copied at each read
        _items(self._metrics, "Discovery/BlindEvaluate", len(blinded) // ELEMENT_SIZE)
        evaluated = await self._private.blind_evaluate(account, blinded)
        _log.debug("BlindEvaluate: %d elements", len(evaluated) // ELEMENT_SIZE)
        return discovery_pb2.BlindEvaluateResponse(
            evaluated_elements=evaluated, key_id=self._private.evaluator.key.key_id
        )


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    """onnet.v1.Registry over RegistryService; the gate admits trusted services only."""

    def __init__(
        self, registry: RegistryService, routing: RoutingService, metrics: Metrics
    ) -> None:
        """Serve ``registry`` and ``routing`` to the trusted services the gate admits."""
        self._registry = registry
        self._routing = routing
        self._metrics = metrics

    @translate_errors
    async def Register(
        self, request: registry_pb2.RegisterRequest, context: RegisterContext
    ) -> registry_pb2.RegisterResponse:
        """Add or move a user."""
        outcome = await self._registry.register(request.user_id, request.e164, request.discoverable)
        _log.debug(
            "Register: updated=%s displaced=%s", outcome.updated, bool(outcome.displaced_user_id)
        )
        return registry_pb2.RegisterResponse(
            updated=outcome.updated, displaced_user_id=outcome.displaced_user_id or ""
        )

    @translate_errors
    async def Unregister(
        self, request: registry_pb2.UnregisterRequest, context: UnregisterContext
    ) -> registry_pb2.UnregisterResponse:
        """Erase a user."""
        await self._registry.unregister(request.user_id)
        _log.debug("Unregister: done")
        return registry_pb2.UnregisterResponse()

    async def ImportUsers(
        self, request_iterator: AsyncIterator[registry_pb2.ImportBatch], context: ImportContext
    ) -> AsyncIterator[registry_pb2.ImportProgress]:
        """Register batches of users, answering each batch in order."""
        first_row = 0
        try:
            async for batch in request_iterator:
                # Counted before a Python object is made per row: a batch of a million empty
                # rows costs its parse, not a million objects.
                self._registry.check_batch_size(len(batch.rows))
                rows = [ImportRow(r.user_id, r.e164, r.discoverable) for r in batch.rows]
                _items(self._metrics, "Registry/ImportUsers", len(rows))
                outcome = await self._registry.import_batch(rows, first_row)
                first_row += len(rows)
                _log.debug("ImportUsers: batch of %d, %d skipped", len(rows), len(outcome.rejected))
                yield registry_pb2.ImportProgress(
                    imported=outcome.imported,
                    rejected=[
                        registry_pb2.ImportRejection(row=r.row, field=r.field, reason=r.reason)
                        for r in outcome.rejected
                    ],
                )
        except Exception as error:  # the boundary: nothing may escape unmapped
            await abort_for(error, context, "ImportUsers")

    @translate_errors
    async def Block(
        self, request: registry_pb2.BlockRequest, context: BlockContext
    ) -> registry_pb2.BlockResponse:
        """Add a number to a user's blocklist."""
        return await self._set_blocked(request, context, blocked=True)

    @translate_errors
    async def Unblock(
        self, request: registry_pb2.BlockRequest, context: BlockContext
    ) -> registry_pb2.BlockResponse:
        """Remove a number from a user's blocklist."""
        return await self._set_blocked(request, context, blocked=False)

    @translate_errors
    async def Lookup(
        self, request: registry_pb2.LookupRequest, context: LookupContext
    ) -> registry_pb2.LookupResponse:
        """Who holds each number (call routing)."""
        numbers, hashes = list(request.e164), request.hashes  # each field read once
        _items(self._metrics, "Registry/Lookup", len(numbers) or len(hashes) // CONTACT_HASH_SIZE)
        holders = self._routing.lookup(numbers, hashes)
        _log.debug("Lookup: %d numbers, %d held", len(holders), sum(map(bool, holders)))
        return registry_pb2.LookupResponse(user_ids=holders)

    @translate_errors
    async def Screen(
        self, request: registry_pb2.ScreenRequest, context: ScreenContext
    ) -> registry_pb2.ScreenResponse:
        """May this caller ring this user (call screening)."""
        blocked = self._routing.screen(request.caller_e164, request.callee_user_id)
        _log.debug("Screen: %s", "blocked" if blocked else "allowed")
        verdict = registry_pb2.VERDICT_BLOCKED if blocked else registry_pb2.VERDICT_ALLOWED
        return registry_pb2.ScreenResponse(verdict=verdict)

    async def _set_blocked(
        self, request: registry_pb2.BlockRequest, context: BlockContext, *, blocked: bool
    ) -> registry_pb2.BlockResponse:
        changed = await self._registry.set_blocked(request.user_id, request.e164, blocked)
        _log.debug("%s: changed=%s", "Block" if blocked else "Unblock", changed)
        return registry_pb2.BlockResponse(changed=changed)


ServingStatus: TypeAlias = "health_pb2.HealthCheckResponse.ServingStatus.ValueType"
ListContext = aio.ServicerContext[health_pb2.HealthListRequest, health_pb2.HealthListResponse]


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc]  # untyped library
    """grpc.health.v1.Health, List included.

    The library's asyncio servicer leaves List unimplemented, so a call to it would end in
    UNKNOWN and an ERROR line; this one keeps the statuses it was given and lists them.
    """

    def __init__(self) -> None:
        """Start with the server as a whole serving."""
        super().__init__()
        self._statuses: dict[str, ServingStatus] = {"": health_pb2.HealthCheckResponse.SERVING}
        self._shutting_down = False

    async def set(self, service: str, status: ServingStatus) -> None:
        """Set one service's status (ignored once shutting down, as the library does)."""
        await super().set(service, status)
        if not self._shutting_down:
            self._statuses[service] = status

    async def enter_graceful_shutdown(self) -> None:
        """Report every service NOT_SERVING from now on."""
        self._shutting_down = True
        self._statuses = dict.fromkeys(self._statuses, health_pb2.HealthCheckResponse.NOT_SERVING)
        await super().enter_graceful_shutdown()

    async def List(
        self, request: health_pb2.HealthListRequest, context: ListContext
    ) -> health_pb2.HealthListResponse:
        """Every service's status."""
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._statuses.items()
            }
        )


class BenchServicer(bench_pb2_grpc.BenchServicer):
    """onnet.v1.Bench: Discover's request and response shapes, and no work in between."""

    def __init__(self) -> None:
        """Answer every call with one fixed response, built once."""
        # A re-sync token's size, so the answer weighs what a Discover answer without
        # matches weighs.
        self._answer = discovery_pb2.DiscoverResponse(token=bytes(45))

    async def Ceiling(
        self, request: discovery_pb2.DiscoverRequest, context: CeilingContext
    ) -> discovery_pb2.DiscoverResponse:
        """The fixed answer."""
        return self._answer
