"""The friendly clients: address books in, matches out; registrations for trusted services."""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import grpc
from grpc import aio

from onnet._calls import (
    AsyncDiscoveryCalls,
    AsyncRegistryCalls,
    DiscoveryCalls,
    Metadata,
    RegistryCalls,
    RetryPolicy,
)
from onnet._contact_hash import CONTACT_HASH_SIZE, CONTACT_HASH_VERSION
from onnet._credentials import bearer
from onnet._errors import (
    InvalidArgumentError,
    ProtocolError,
)
from onnet._importing import (
    AsyncWindowedBatches,
    ImportProgressCallback,
    ImportResult,
    ImportRow,
    WindowedBatches,
)
from onnet._plan import DiscoveryPlan, DiscoveryResult
from onnet._private import PrivatePlan
from onnet._resync import PartSync, SyncState
from onnet.protocol import oprf
from onnet.v1 import discovery_pb2, registry_pb2

__all__ = [
    "AsyncClient",
    "AsyncRegistryClient",
    "Client",
    "RegisterResult",
    "RegistryClient",
    "ServerConfig",
    "Verdict",
]


@dataclass(frozen=True)
class ServerConfig:
    """What a Discovery server announces in GetConfig."""

    contact_hash_version: int
    """The contact-hash formula the server expects (this SDK speaks version 1)."""
    max_batch: int
    """The largest number of hashes in one Discover call; the clients split above it."""
    max_message_bytes: int
    """The largest request message the server accepts."""
    quota_remaining: int | None
    """New numbers the account may still test, or None when no quota is enforced."""
    oprf_suite: str = ""
    """The RFC 9497 suite of BlindEvaluate ("ristretto255-SHA512"), or empty."""
    oprf_key_id: str = ""
    """The id of the server's OPRF key, or empty."""
    bucket_prefix_bits: int = 0
    """Bits of an OPRF output that name its bucket in FetchBuckets."""
    max_buckets: int = 0
    """The most buckets one FetchBuckets may ask for (bounds the response's size)."""
    max_previous: int = 0
    """The most hashes in a request's ``previous_hashes`` or ``removed_hashes``: what fits
    beside a full batch (a request carries at most ``max_batch + max_previous`` in all)."""

    @classmethod
    def from_proto(cls, message: discovery_pb2.DiscoveryConfig) -> ServerConfig:
        """Read the GetConfig answer."""
        quota = message.quota_remaining if message.HasField("quota_remaining") else None
        return cls(
            message.contact_hash_version,
            message.max_batch,
            message.max_message_bytes,
            quota,
            message.oprf_suite,
            message.oprf_key_id,
            message.bucket_prefix_bits,
            message.max_buckets,
            message.max_previous,
        )


class Verdict(enum.Enum):
    """Registry.Screen's answer: may the caller ring the callee."""

    ALLOWED = "allowed"
    """The callee has not blocked the caller's number."""
    BLOCKED = "blocked"
    """The callee blocked the caller's number: do not ring."""


def _holders(response: registry_pb2.LookupResponse, asked: int) -> list[str | None]:
    if len(response.user_ids) != asked:
        raise ProtocolError("malformed LookupResponse: not one user id per number asked")
    return [user_id or None for user_id in response.user_ids]


def _verdict(response: registry_pb2.ScreenResponse) -> Verdict:
    if response.verdict == registry_pb2.VERDICT_BLOCKED:
        return Verdict.BLOCKED
    if response.verdict == registry_pb2.VERDICT_ALLOWED:
        return Verdict.ALLOWED
    raise ProtocolError("malformed ScreenResponse: a verdict this SDK does not know")


@dataclass(frozen=True)
class RegisterResult:
    """The outcome of a registration."""

    updated: bool
    """True when the user was already registered (perhaps under another number)."""
    displaced_user_id: str
    """The user who held this number before and lost it; empty if none."""


def _check_private(config: ServerConfig) -> None:
    """Refuse to run private mode against parameters this SDK cannot use."""
    _check_server(config)
    if config.oprf_suite != oprf.SUITE or not config.oprf_key_id:
        raise ProtocolError(f"the server offers no {oprf.SUITE} private mode")
    if not 0 <= config.bucket_prefix_bits <= 32 or config.max_buckets < 1:
        raise ProtocolError("the server announced unusable bucket parameters")


def _check_key(config: ServerConfig, key_id: str) -> None:
    # A key that changed between GetConfig and BlindEvaluate (a rotation, or servers that
    # disagree) would put wrong outputs in the cache: stop, so the next call starts afresh.
    if key_id != config.oprf_key_id:
        raise ProtocolError("the server's OPRF key changed during discovery; retry")


def _check_server(config: ServerConfig) -> None:
    if config.contact_hash_version != CONTACT_HASH_VERSION:
        raise ProtocolError(
            f"the server expects contact-hash version {config.contact_hash_version}; "
            f"this SDK speaks version {CONTACT_HASH_VERSION}"
        )
    if config.max_batch < 1:
        raise ProtocolError("the server announced max_batch 0")


def _collect(
    positions: Sequence[int], response: discovery_pb2.DiscoverResponse, into: dict[int, str]
) -> None:
    """Place the matches of a request whose hashes sit at ``positions`` of the book."""
    indexes, users = response.matched_indexes, response.user_ids
    if len(indexes) != len(users) or any(i >= len(positions) for i in indexes):
        raise ProtocolError("malformed DiscoverResponse: matches that name no hash sent")
    for index, user_id in zip(indexes, users, strict=True):
        into[positions[index]] = user_id


def _with_token(metadata: Metadata, token: str | None) -> Metadata:
    """``metadata`` plus the bearer credential, if there is one."""
    return (*metadata, *bearer(token)) if token else tuple(metadata)


def _charge_of(sent: PartSync) -> int:
    """The quota a sent part cost: its added hashes, or all of them without a token."""
    return len(sent.added_hashes if sent.token else sent.hashes) // CONTACT_HASH_SIZE


def _max_hashes(config: ServerConfig) -> int:
    """How many hashes one request may carry over all its fields, as the server announced."""
    return config.max_batch + config.max_previous


def _discover_request(sync: PartSync) -> discovery_pb2.DiscoverRequest:
    """The difference form: the part's hashes once, and what changed since its token."""
    return discovery_pb2.DiscoverRequest(
        hashes=sync.hashes,
        token=sync.token,
        added_hashes=sync.added_hashes,
        removed_hashes=sync.removed_hashes,
    )


def _token_refused(error: InvalidArgumentError, sync: PartSync) -> bool:
    """An expired or retired re-sync token (or one the server cannot verify): go without."""
    return error.field == "token" and bool(sync.token)


class _BlockingChannel:
    """Owns a blocking channel: close() and the context-manager protocol."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None) -> None:
        self._channel = (
            grpc.secure_channel(target, credentials)
            if credentials is not None
            else grpc.insecure_channel(target)
        )

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _AsyncChannel:
    """Owns a grpc.aio channel: close() and the async context-manager protocol."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None) -> None:
        self._channel = (
            aio.secure_channel(target, credentials)
            if credentials is not None
            else aio.insecure_channel(target)
        )

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class Client(_BlockingChannel):
    """A blocking client of the Discovery service.

    Use as a context manager, or call ``close()``::

        with onnet.Client("127.0.0.1:50051") as client:
            result = client.discover(["(415) 555-0100"], default_region="US")
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
        token: str | None = None,
        sync_state: SyncState | None = None,
    ) -> None:
        """Open a channel to ``target`` ("host:port"); ``timeout`` is each call's deadline.

        ``token`` is the account's credential from the account service; ``credentials``
        the channel's TLS (``onnet.channel_credentials``); ``sync_state`` a re-sync state
        kept from an earlier session (``SyncState.from_bytes``).
        """
        super().__init__(target, credentials)
        self.calls = DiscoveryCalls(
            self._channel, timeout=timeout, metadata=_with_token(metadata, token), retry=retry
        )
        """The typed call layer underneath, one method per RPC."""
        self.sync_state = sync_state if sync_state is not None else SyncState()
        """What this account already paid for: re-syncs of those contacts cost no quota."""
        self._config: ServerConfig | None = None
        self._sync_lock = threading.Lock()

    def get_config(self) -> ServerConfig:
        """Ask the server for its parameters (cached after the first call)."""
        if self._config is None:
            config = ServerConfig.from_proto(
                self.calls.get_config(discovery_pb2.GetConfigRequest())
            )
            _check_server(config)
            self._config = config
        return self._config

    def discover(
        self, numbers: Iterable[str], default_region: str | None = None, *, private: bool = False
    ) -> DiscoveryResult:
        """Find which entries of an address book are on the network.

        Entries are normalized with ``default_region``; invalid ones are returned as rejected.
        Each distinct number is uploaded once, as a contact hash, in parts of the book no
        larger than the server allows; with ``private``, only as a blinded OPRF element
        (RFC 9497) and a bucket number, so the server learns neither the number nor its hash.

        ``numbers`` is the whole address book: ``sync_state`` then proves what was paid for
        before, and only new numbers cost quota. Numbers left out are forgotten by the state
        and pay again if they come back.
        """
        plan = DiscoveryPlan(numbers, default_region)
        if private:
            return self._discover_private(plan)
        config = self.get_config()
        matched: dict[int, str] = {}
        charged = 0
        # One sync at a time: two interleaved would each carry a token the other outdated.
        with self._sync_lock:
            for sync in self.sync_state.syncs(plan.hashes, config.max_batch, _max_hashes(config)):
                sent, response = self._discover_part(sync)
                _collect(sync.positions, response, matched)
                charged += _charge_of(sent)
        return plan.result(matched, charged)

    def quota_remaining(self) -> int | None:
        """New numbers this account may still test now (asked afresh; None if unlimited)."""
        message = self.calls.get_config(discovery_pb2.GetConfigRequest())
        return ServerConfig.from_proto(message).quota_remaining

    def _discover_part(self, sync: PartSync) -> tuple[PartSync, discovery_pb2.DiscoverResponse]:
        try:
            response = self.calls.discover(_discover_request(sync))
        except InvalidArgumentError as error:
            if not _token_refused(error, sync):
                raise
            sync = self.sync_state.forget(sync)
            response = self.calls.discover(_discover_request(sync))
        self.sync_state.settle(sync, response.token)
        return sync, response

    def _discover_private(self, plan: DiscoveryPlan) -> DiscoveryResult:
        # Fresh parameters: the bucket size follows the registry's.
        config = ServerConfig.from_proto(self.calls.get_config(discovery_pb2.GetConfigRequest()))
        _check_private(config)
        outputs = self.sync_state.private_outputs(config.oprf_key_id)
        private = PrivatePlan(plan.unique_numbers, plan.hashes, outputs)
        for indexes, blinded in private.blinded_batches(config.max_batch):
            evaluate = discovery_pb2.BlindEvaluateRequest(blinded_elements=blinded)
            response = self.calls.blind_evaluate(evaluate)
            _check_key(config, response.key_id)
            private.take_evaluated(indexes, response.evaluated_elements)
        bits = config.bucket_prefix_bits
        entries: dict[int, list[bytes]] = {}
        for wanted in private.bucket_requests(bits, config.max_buckets):
            fetch = discovery_pb2.FetchBucketsRequest(prefix_bits=bits, buckets=wanted)
            for bucket in self.calls.fetch_buckets(fetch).buckets:
                entries[bucket.bucket] = list(bucket.entries)
        self.sync_state.keep_outputs(plan.hashes)
        return plan.result(private.matches(bits, entries), private.evaluated)


class AsyncClient(_AsyncChannel):
    """An asyncio client of the Discovery service; the same API as Client, awaited."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
        token: str | None = None,
        sync_state: SyncState | None = None,
    ) -> None:
        """Open a channel to ``target`` ("host:port") (see Client for the arguments)."""
        super().__init__(target, credentials)
        self.calls = AsyncDiscoveryCalls(
            self._channel, timeout=timeout, metadata=_with_token(metadata, token), retry=retry
        )
        """The typed call layer underneath, one method per RPC."""
        self.sync_state = sync_state if sync_state is not None else SyncState()
        """What this account already paid for: re-syncs of those contacts cost no quota."""
        self._config: ServerConfig | None = None
        self._sync_lock = asyncio.Lock()

    async def get_config(self) -> ServerConfig:
        """Ask the server for its parameters (cached after the first call)."""
        if self._config is None:
            message = await self.calls.get_config(discovery_pb2.GetConfigRequest())
            config = ServerConfig.from_proto(message)
            _check_server(config)
            self._config = config
        return self._config

    async def discover(
        self, numbers: Iterable[str], default_region: str | None = None, *, private: bool = False
    ) -> DiscoveryResult:
        """Find which entries of an address book are on the network (see Client.discover)."""
        plan = DiscoveryPlan(numbers, default_region)
        if private:
            return await self._discover_private(plan)
        config = await self.get_config()
        matched: dict[int, str] = {}
        charged = 0
        # One sync at a time: two interleaved would each carry a token the other outdated.
        async with self._sync_lock:
            for sync in self.sync_state.syncs(plan.hashes, config.max_batch, _max_hashes(config)):
                sent, response = await self._discover_part(sync)
                _collect(sync.positions, response, matched)
                charged += _charge_of(sent)
        return plan.result(matched, charged)

    async def quota_remaining(self) -> int | None:
        """New numbers this account may still test now (see Client.quota_remaining)."""
        message = await self.calls.get_config(discovery_pb2.GetConfigRequest())
        return ServerConfig.from_proto(message).quota_remaining

    async def _discover_part(
        self, sync: PartSync
    ) -> tuple[PartSync, discovery_pb2.DiscoverResponse]:
        try:
            response = await self.calls.discover(_discover_request(sync))
        except InvalidArgumentError as error:
            if not _token_refused(error, sync):
                raise
            sync = self.sync_state.forget(sync)
            response = await self.calls.discover(_discover_request(sync))
        self.sync_state.settle(sync, response.token)
        return sync, response

    async def _discover_private(self, plan: DiscoveryPlan) -> DiscoveryResult:
        message = await self.calls.get_config(discovery_pb2.GetConfigRequest())
        config = ServerConfig.from_proto(message)
        _check_private(config)
        outputs = self.sync_state.private_outputs(config.oprf_key_id)
        private = PrivatePlan(plan.unique_numbers, plan.hashes, outputs)
        for indexes, blinded in private.blinded_batches(config.max_batch):
            request = discovery_pb2.BlindEvaluateRequest(blinded_elements=blinded)
            response = await self.calls.blind_evaluate(request)
            _check_key(config, response.key_id)
            private.take_evaluated(indexes, response.evaluated_elements)
        bits = config.bucket_prefix_bits
        entries: dict[int, list[bytes]] = {}
        for wanted in private.bucket_requests(bits, config.max_buckets):
            request_buckets = discovery_pb2.FetchBucketsRequest(prefix_bits=bits, buckets=wanted)
            for bucket in (await self.calls.fetch_buckets(request_buckets)).buckets:
                entries[bucket.bucket] = list(bucket.entries)
        self.sync_state.keep_outputs(plan.hashes)
        return plan.result(private.matches(bits, entries), private.evaluated)


class RegistryClient(_BlockingChannel):
    """A blocking client of the Registry service, for trusted services (the account service)."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
        token: str | None = None,
    ) -> None:
        """Open a channel to ``target`` ("host:port"); ``timeout`` is each call's deadline.

        ``token`` is a service credential (or ``credentials`` carry a trusted client
        certificate).
        """
        super().__init__(target, credentials)
        self.calls = RegistryCalls(
            self._channel, timeout=timeout, metadata=_with_token(metadata, token), retry=retry
        )
        """The typed call layer underneath, one method per RPC."""

    def register(self, user_id: str, e164: str, *, discoverable: bool = True) -> RegisterResult:
        """Register ``user_id`` with their verified E.164 number, or move them to it."""
        request = registry_pb2.RegisterRequest(
            user_id=user_id, e164=e164, discoverable=discoverable
        )
        response = self.calls.register(request)
        return RegisterResult(response.updated, response.displaced_user_id)

    def unregister(self, user_id: str) -> None:
        """Erase ``user_id``; raises NotFoundError when no such user is registered."""
        self.calls.unregister(registry_pb2.UnregisterRequest(user_id=user_id))

    def block(self, user_id: str, e164: str) -> bool:
        """Block ``e164`` for ``user_id``: its holder never finds them. False if already so."""
        request = registry_pb2.BlockRequest(user_id=user_id, e164=e164)
        return self.calls.block(request).changed

    def unblock(self, user_id: str, e164: str) -> bool:
        """Unblock ``e164`` for ``user_id``; False if it was not blocked."""
        request = registry_pb2.BlockRequest(user_id=user_id, e164=e164)
        return self.calls.unblock(request).changed

    def lookup(self, numbers: Sequence[str]) -> list[str | None]:
        """Call routing: the user holding each E.164 number (hidden users too), or None."""
        response = self.calls.lookup(registry_pb2.LookupRequest(e164=numbers))
        return _holders(response, len(numbers))

    def screen(self, caller_e164: str, callee_user_id: str) -> Verdict:
        """Call screening: may ``caller_e164`` ring ``callee_user_id``."""
        request = registry_pb2.ScreenRequest(caller_e164=caller_e164, callee_user_id=callee_user_id)
        return _verdict(self.calls.screen(request))

    def import_users(
        self,
        rows: Iterable[ImportRow],
        *,
        batch_size: int = 1000,
        window: int = 8,
        progress: ImportProgressCallback | None = None,
    ) -> ImportResult:
        """Register many users, ``batch_size`` rows a message, ``window`` messages in flight.

        Invalid rows are skipped by the server and listed in the result with their position
        among ``rows``; ``progress`` is called after every batch.
        """
        batches = WindowedBatches(rows, batch_size, window)
        result = ImportResult()
        for answer in self.calls.import_users(iter(batches)):
            batches.answered()
            result.add(answer)
            if progress is not None:
                progress(result, batches.rows_sent)
        return result


class AsyncRegistryClient(_AsyncChannel):
    """An asyncio client of the Registry service; the same API as RegistryClient, awaited."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
        token: str | None = None,
    ) -> None:
        """Open a channel to ``target`` ("host:port") (see RegistryClient for the arguments)."""
        super().__init__(target, credentials)
        self.calls = AsyncRegistryCalls(
            self._channel, timeout=timeout, metadata=_with_token(metadata, token), retry=retry
        )
        """The typed call layer underneath, one method per RPC."""

    async def register(
        self, user_id: str, e164: str, *, discoverable: bool = True
    ) -> RegisterResult:
        """Register ``user_id`` with their verified E.164 number, or move them to it."""
        request = registry_pb2.RegisterRequest(
            user_id=user_id, e164=e164, discoverable=discoverable
        )
        response = await self.calls.register(request)
        return RegisterResult(response.updated, response.displaced_user_id)

    async def unregister(self, user_id: str) -> None:
        """Erase ``user_id``; raises NotFoundError when no such user is registered."""
        await self.calls.unregister(registry_pb2.UnregisterRequest(user_id=user_id))

    async def block(self, user_id: str, e164: str) -> bool:
        """Block ``e164`` for ``user_id`` (see RegistryClient.block)."""
        request = registry_pb2.BlockRequest(user_id=user_id, e164=e164)
        return (await self.calls.block(request)).changed

    async def unblock(self, user_id: str, e164: str) -> bool:
        """Unblock ``e164`` for ``user_id`` (see RegistryClient.unblock)."""
        request = registry_pb2.BlockRequest(user_id=user_id, e164=e164)
        return (await self.calls.unblock(request)).changed

    async def lookup(self, numbers: Sequence[str]) -> list[str | None]:
        """Call routing (see RegistryClient.lookup)."""
        response = await self.calls.lookup(registry_pb2.LookupRequest(e164=numbers))
        return _holders(response, len(numbers))

    async def screen(self, caller_e164: str, callee_user_id: str) -> Verdict:
        """Call screening (see RegistryClient.screen)."""
        request = registry_pb2.ScreenRequest(caller_e164=caller_e164, callee_user_id=callee_user_id)
        return _verdict(await self.calls.screen(request))

    async def import_users(
        self,
        rows: Iterable[ImportRow],
        *,
        batch_size: int = 1000,
        window: int = 8,
        progress: ImportProgressCallback | None = None,
    ) -> ImportResult:
        """Register many users (see RegistryClient.import_users)."""
        batches = AsyncWindowedBatches(rows, batch_size, window)
        result = ImportResult()
        async for answer in self.calls.import_users(aiter(batches)):
            batches.answered()
            result.add(answer)
            if progress is not None:
                progress(result, batches.rows_sent)
        return result
