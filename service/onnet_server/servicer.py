"""Thin gRPC servicers: decode the request, call the core, encode the answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from grpc import aio

from onnet import _oprf as oprf
from onnet.v1 import discovery_pb2, discovery_pb2_grpc, registry_pb2, registry_pb2_grpc
from onnet_server.core.discovery import DiscoveryService
from onnet_server.core.private import BlindEvaluator, BucketServer
from onnet_server.core.registry import ImportRow, RegistryService
from onnet_server.status import abort_for, translate_errors

__all__ = ["DiscoveryServicer", "RegistryServicer"]

# Counts and outcomes only: never a number, a hash, a token or a user id.
_log = logging.getLogger(__name__)

DiscoverContext = aio.ServicerContext[discovery_pb2.DiscoverRequest, discovery_pb2.DiscoverResponse]
ConfigContext = aio.ServicerContext[discovery_pb2.GetConfigRequest, discovery_pb2.DiscoveryConfig]
FetchContext = aio.ServicerContext[
    discovery_pb2.FetchBucketsRequest, discovery_pb2.FetchBucketsResponse
]
EvaluateContext = aio.ServicerContext[
    discovery_pb2.BlindEvaluateRequest, discovery_pb2.BlindEvaluateResponse
]
RegisterContext = aio.ServicerContext[registry_pb2.RegisterRequest, registry_pb2.RegisterResponse]
ImportContext = aio.ServicerContext[registry_pb2.ImportBatch, registry_pb2.ImportProgress]
UnregisterContext = aio.ServicerContext[
    registry_pb2.UnregisterRequest, registry_pb2.UnregisterResponse
]


class DiscoveryServicer(discovery_pb2_grpc.DiscoveryServicer):
    """onnet.v1.Discovery over DiscoveryService."""

    def __init__(
        self, discovery: DiscoveryService, evaluator: BlindEvaluator, buckets: BucketServer
    ) -> None:
        """Serve ``discovery``, and private mode's ``evaluator`` and ``buckets``."""
        self._discovery = discovery
        self._evaluator = evaluator
        self._buckets = buckets

    @translate_errors
    async def Discover(
        self, request: discovery_pb2.DiscoverRequest, context: DiscoverContext
    ) -> discovery_pb2.DiscoverResponse:
        """Match a batch of contact hashes."""
        matches = self._discovery.discover(request.hashes, request.previous_hashes)
        _log.debug(
            "Discover: %d hashes, %d matches", len(request.hashes) // 32, len(matches.user_ids)
        )
        return discovery_pb2.DiscoverResponse(
            matched_indexes=matches.indexes.tolist(), user_ids=matches.user_ids
        )

    @translate_errors
    async def GetConfig(
        self, request: discovery_pb2.GetConfigRequest, context: ConfigContext
    ) -> discovery_pb2.DiscoveryConfig:
        """Announce the contact-hash version and the limits."""
        parameters = self._discovery.parameters()
        return discovery_pb2.DiscoveryConfig(
            contact_hash_version=parameters.contact_hash_version,
            max_batch=parameters.max_batch,
            max_message_bytes=parameters.max_message_bytes,
            quota_remaining=parameters.quota_remaining,
            oprf_suite=oprf.SUITE,
            oprf_key_id=self._evaluator.key.key_id,
            bucket_prefix_bits=self._buckets.prefix_bits(),
            max_buckets=self._buckets.max_buckets,
        )

    @translate_errors
    async def FetchBuckets(
        self, request: discovery_pb2.FetchBucketsRequest, context: FetchContext
    ) -> discovery_pb2.FetchBucketsResponse:
        """Every entry of the asked buckets."""
        found = self._buckets.fetch(request.prefix_bits, list(request.buckets))
        _log.debug("FetchBuckets: %d buckets", len(found))
        return discovery_pb2.FetchBucketsResponse(
            buckets=[
                discovery_pb2.Bucket(bucket=bucket, entries=entries)
                for bucket, entries in found.items()
            ]
        )

    @translate_errors
    async def BlindEvaluate(
        self, request: discovery_pb2.BlindEvaluateRequest, context: EvaluateContext
    ) -> discovery_pb2.BlindEvaluateResponse:
        """Apply the OPRF key to blinded elements."""
        # Scalar multiplications release the GIL: a worker thread keeps the event loop free
        # for other calls and lets a second core share the work.
        evaluated = await asyncio.to_thread(
            self._evaluator.blind_evaluate, request.blinded_elements
        )
        _log.debug("BlindEvaluate: %d elements", len(evaluated) // oprf.ELEMENT_SIZE)
        return discovery_pb2.BlindEvaluateResponse(
            evaluated_elements=evaluated, key_id=self._evaluator.key.key_id
        )


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    """onnet.v1.Registry over RegistryService."""

    def __init__(self, registry: RegistryService) -> None:
        """Serve ``registry``."""
        self._registry = registry

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
        async for batch in request_iterator:
            rows = [ImportRow(r.user_id, r.e164, r.discoverable) for r in batch.rows]
            try:
                outcome = await self._registry.import_batch(rows, first_row)
            except Exception as error:  # the boundary: nothing may escape unmapped
                await abort_for(error, context, "ImportUsers")
            first_row += len(rows)
            _log.debug("ImportUsers: batch of %d, %d skipped", len(rows), len(outcome.rejected))
            yield registry_pb2.ImportProgress(
                imported=outcome.imported,
                rejected=[
                    registry_pb2.ImportRejection(row=r.row, field=r.field, reason=r.reason)
                    for r in outcome.rejected
                ],
            )
