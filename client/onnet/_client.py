"""The friendly clients: address books in, matches out; registrations for trusted services.

Each client joins two halves. Its service's half (``_DiscoveryClient``, ``_RegistryClient``)
is written once: the constructor, and flows that hold the logic without I/O
(``onnet._hashed``, ``onnet._private``, ``onnet._config``, ``onnet._registry``). Its I/O half
(``_Blocking``, ``_Asyncio``) owns the channel and drives those flows over the calls layer
(``onnet._flow``). The public classes add each method, blocking or awaited, in a line.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import grpc
from grpc import aio

from onnet import _registry
from onnet._calls import (
    AsyncDiscoveryCalls,
    AsyncRegistryCalls,
    DiscoveryCalls,
    Metadata,
    RegistryCalls,
    _Calls,
)
from onnet._config import ServerConfig, ask_config, check_server
from onnet._credentials import bearer
from onnet._flow import run, run_async
from onnet._hashed import discover_hashed
from onnet._importing import (
    AsyncWindowedBatches,
    ImportProgressCallback,
    ImportResult,
    ImportRow,
    WindowedBatches,
)
from onnet._plan import DiscoveryPlan, DiscoveryResult
from onnet._private import discover_private
from onnet._registry import RegisterResult, Verdict
from onnet._resync import SyncState
from onnet._retry import RetryPolicy
from onnet._rpc import Flow

__all__ = ["AsyncClient", "AsyncRegistryClient", "Client", "RegistryClient"]

_ChannelT = TypeVar("_ChannelT", grpc.Channel, aio.Channel)
_CallsT = TypeVar("_CallsT", bound="_Calls[Any, Any]")
_Result = TypeVar("_Result")


def _with_token(metadata: Metadata, token: str | None) -> Metadata:
    """``metadata`` plus the bearer credential, if there is one."""
    return (*metadata, *bearer(token)) if token else tuple(metadata)


class _Connection(Generic[_ChannelT, _CallsT]):
    """What a client's two halves share: its channel, and the typed calls over it."""

    calls: _CallsT
    """The typed call layer underneath, one method per RPC."""
    _channel: _ChannelT
    _calls_type: type[_CallsT]
    """The calls class of the client's service and kind of I/O."""

    def _connect(
        self,
        target: str,
        credentials: grpc.ChannelCredentials | None,
        *,
        timeout: float,
        metadata: Metadata,
        retry: RetryPolicy | None,
    ) -> None:
        """Open the channel to ``target``, and the calls over it."""
        self._channel = self._open(target, credentials)
        self.calls = self._calls_type(
            self._channel, timeout=timeout, metadata=metadata, retry=retry
        )

    def _open(self, target: str, credentials: grpc.ChannelCredentials | None) -> _ChannelT:
        raise NotImplementedError


class _Blocking(_Connection[grpc.Channel, _CallsT]):
    """A client's blocking half: a grpc channel, closing it, and the driver of its flows."""

    def _open(self, target: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
        if credentials is None:
            return grpc.insecure_channel(target)
        return grpc.secure_channel(target, credentials)

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

    def _run(self, flow: Flow[_Result]) -> _Result:
        # ``calls`` is looked up for each call, so a replaced one (a test's) is the one used.
        return run(flow, lambda call: call.on(self.calls))


class _Asyncio(_Connection[aio.Channel, _CallsT]):
    """A client's asyncio half: a grpc.aio channel, closing it, and the driver of its flows."""

    def _open(self, target: str, credentials: grpc.ChannelCredentials | None) -> aio.Channel:
        if credentials is None:
            return aio.insecure_channel(target)
        return aio.secure_channel(target, credentials)

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

    async def _run(self, flow: Flow[_Result]) -> _Result:
        return await run_async(flow, lambda call: call.on(self.calls))


class _DiscoveryClient(_Connection[_ChannelT, _CallsT]):
    """The Discovery service's half of a client: its constructor, state and flows."""

    _lock_type: Callable[[], object]
    """Makes the lock that keeps a client's syncs apart (threading's or asyncio's)."""

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
        metadata = _with_token(metadata, token)
        self._connect(target, credentials, timeout=timeout, metadata=metadata, retry=retry)
        self.sync_state = sync_state if sync_state is not None else SyncState()
        """What this account already paid for: re-syncs of those contacts cost no quota."""
        self._config: ServerConfig | None = None
        self._sync_lock = self._lock_type()

    def _config_flow(self) -> Flow[ServerConfig]:
        """The server's parameters, checked: asked once, then kept."""
        if self._config is None:
            config = yield from ask_config()
            check_server(config)
            self._config = config
        return self._config


class _RegistryClient(_Connection[_ChannelT, _CallsT]):
    """The Registry service's half of a client: its constructor."""

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
        metadata = _with_token(metadata, token)
        self._connect(target, credentials, timeout=timeout, metadata=metadata, retry=retry)


class Client(_Blocking[DiscoveryCalls], _DiscoveryClient[grpc.Channel, DiscoveryCalls]):
    """A blocking client of the Discovery service.

    Use as a context manager, or call ``close()``::

        with onnet.Client("127.0.0.1:50051") as client:
            result = client.discover(["(415) 555-0100"], default_region="US")
    """

    _calls_type = DiscoveryCalls
    _lock_type = threading.Lock
    _sync_lock: threading.Lock

    def get_config(self) -> ServerConfig:
        """Ask the server for its parameters (cached after the first call)."""
        return self._run(self._config_flow())

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
        config = None if private else self.get_config()
        # One sync at a time, in either mode: two interleaved would each carry a token the
        # other outdated, or clear the private outputs the other keeps.
        with self._sync_lock:
            if config is None:
                return self._run(discover_private(plan, self.sync_state))
            return self._run(discover_hashed(plan, config, self.sync_state))

    def quota_remaining(self) -> int | None:
        """New numbers this account may still test now (asked afresh; None if unlimited)."""
        return self._run(ask_config()).quota_remaining


class AsyncClient(
    _Asyncio[AsyncDiscoveryCalls], _DiscoveryClient[aio.Channel, AsyncDiscoveryCalls]
):
    """An asyncio client of the Discovery service; the same API as Client, awaited."""

    _calls_type = AsyncDiscoveryCalls
    _lock_type = asyncio.Lock
    _sync_lock: asyncio.Lock

    async def get_config(self) -> ServerConfig:
        """Ask the server for its parameters (cached after the first call)."""
        return await self._run(self._config_flow())

    async def discover(
        self, numbers: Iterable[str], default_region: str | None = None, *, private: bool = False
    ) -> DiscoveryResult:
        """Find which entries of an address book are on the network (see Client.discover)."""
        plan = DiscoveryPlan(numbers, default_region)
        config = None if private else await self.get_config()
        # One sync at a time, in either mode (see Client.discover).
        async with self._sync_lock:
            if config is None:
                return await self._run(discover_private(plan, self.sync_state))
            return await self._run(discover_hashed(plan, config, self.sync_state))

    async def quota_remaining(self) -> int | None:
        """New numbers this account may still test now (see Client.quota_remaining)."""
        return (await self._run(ask_config())).quota_remaining


class RegistryClient(_Blocking[RegistryCalls], _RegistryClient[grpc.Channel, RegistryCalls]):
    """A blocking client of the Registry service, for trusted services (the account service)."""

    _calls_type = RegistryCalls

    def register(self, user_id: str, e164: str, *, discoverable: bool = True) -> RegisterResult:
        """Register ``user_id`` with their verified E.164 number, or move them to it."""
        return self._run(_registry.register(user_id, e164, discoverable=discoverable))

    def unregister(self, user_id: str) -> None:
        """Erase ``user_id``; raises NotFoundError when no such user is registered."""
        self._run(_registry.unregister(user_id))

    def block(self, user_id: str, e164: str) -> bool:
        """Block ``e164`` for ``user_id``: its holder never finds them. False if already so."""
        return self._run(_registry.block(user_id, e164))

    def unblock(self, user_id: str, e164: str) -> bool:
        """Unblock ``e164`` for ``user_id``; False if it was not blocked."""
        return self._run(_registry.unblock(user_id, e164))

    def lookup(self, numbers: Sequence[str]) -> list[str | None]:
        """Call routing: the user holding each E.164 number (hidden users too), or None."""
        return self._run(_registry.lookup(numbers))

    def screen(self, caller_e164: str, callee_user_id: str) -> Verdict:
        """Call screening: may ``caller_e164`` ring ``callee_user_id``."""
        return self._run(_registry.screen(caller_e164, callee_user_id))

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
        batches = WindowedBatches(rows, batch_size, window, progress)
        for answer in self.calls.import_users(iter(batches)):
            batches.answered(answer)
        return batches.result


class AsyncRegistryClient(
    _Asyncio[AsyncRegistryCalls], _RegistryClient[aio.Channel, AsyncRegistryCalls]
):
    """An asyncio client of the Registry service; the same API as RegistryClient, awaited."""

    _calls_type = AsyncRegistryCalls

    async def register(
        self, user_id: str, e164: str, *, discoverable: bool = True
    ) -> RegisterResult:
        """Register ``user_id`` with their verified E.164 number, or move them to it."""
        return await self._run(_registry.register(user_id, e164, discoverable=discoverable))

    async def unregister(self, user_id: str) -> None:
        """Erase ``user_id``; raises NotFoundError when no such user is registered."""
        await self._run(_registry.unregister(user_id))

    async def block(self, user_id: str, e164: str) -> bool:
        """Block ``e164`` for ``user_id`` (see RegistryClient.block)."""
        return await self._run(_registry.block(user_id, e164))

    async def unblock(self, user_id: str, e164: str) -> bool:
        """Unblock ``e164`` for ``user_id`` (see RegistryClient.unblock)."""
        return await self._run(_registry.unblock(user_id, e164))

    async def lookup(self, numbers: Sequence[str]) -> list[str | None]:
        """Call routing (see RegistryClient.lookup)."""
        return await self._run(_registry.lookup(numbers))

    async def screen(self, caller_e164: str, callee_user_id: str) -> Verdict:
        """Call screening (see RegistryClient.screen)."""
        return await self._run(_registry.screen(caller_e164, callee_user_id))

    async def import_users(
        self,
        rows: Iterable[ImportRow],
        *,
        batch_size: int = 1000,
        window: int = 8,
        progress: ImportProgressCallback | None = None,
    ) -> ImportResult:
        """Register many users (see RegistryClient.import_users)."""
        batches = AsyncWindowedBatches(rows, batch_size, window, progress)
        async for answer in self.calls.import_users(aiter(batches)):
            batches.answered(answer)
        return batches.result
