"""The core services wired as ``start_server`` wires them (server.py), from in-memory parts.

No gRPC server, no Redis, no process: the embedded MemoryRegistry, the MemoryQuota its
``quota_store`` gives (here on a fake clock, which the re-sync tokens share), and heavy work
run inline (and recorded) instead of on the server's thread pool. The fixtures built on it are
in conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import onnet
from onnet_server.core.accounts import Accounts
from onnet_server.core.discovery import DiscoveryLimits, DiscoveryService
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.private.buckets import BucketServer
from onnet_server.core.private.keys import BlindEvaluator, OprfKey
from onnet_server.core.private.service import PrivateDiscovery
from onnet_server.core.quota import QuotaPolicy
from onnet_server.core.registry import RegistryService
from onnet_server.core.resync import ResyncTokens
from onnet_server.core.routing import RoutingService
from onnet_server.core.row_preparer import RowPreparer
from onnet_server.stores.memory import MemoryRegistry
from onnet_server.stores.memory_quota import MemoryQuota

PEPPER = b"core unit tests: 32-byte pepper!"
EPOCH = 1_700_000_000.0
CAPACITY = 50
"""New numbers an account may look up at once."""
REFILL_SECONDS = 500.0
"""A spent quota comes back at one unit every ten seconds."""
MAX_BATCH = 40
MAX_MESSAGE_BYTES = 1 << 16
TOKEN_TTL = 3_600

ACCOUNT, ACCOUNT_NUMBER = "me", "+12025550100"
"""The discovering account, registered (hidden) at its own number by ``build_core``."""

_Result = TypeVar("_Result")


class Clock:
    """A clock that stands still at EPOCH until a test moves it."""

    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> float:
        return self.now


@dataclass
class InlineWork:
    """The server's WorkPool, minus its threads: each job runs at once, and is recorded."""

    ran: list[str] = field(default_factory=list)

    async def run(self, account: str, work: Callable[..., _Result], *args: object) -> _Result:
        self.ran.append(work.__name__)
        return work(*args)


@dataclass
class Core:
    """Every core service over one in-memory registry, quota and clock."""

    clock: Clock
    store: MemoryRegistry
    quota: MemoryQuota
    fingerprinter: Fingerprinter
    oprf_key: OprfKey
    heavy: InlineWork
    discovery: DiscoveryService
    private: PrivateDiscovery
    registry: RegistryService
    routing: RoutingService

    async def remaining(self, account: str = ACCOUNT) -> int:
        """The quota ``account`` has left now."""
        return await self.quota.remaining(account)


def build_core(
    *,
    capacity: int = CAPACITY,
    max_batch: int = MAX_BATCH,
    dev_mode: bool = False,
    account: str | None = ACCOUNT,
) -> Core:
    """The services as ``start_server`` builds them, the discovering ``account`` registered."""
    clock = Clock()
    store = MemoryRegistry()
    quota = MemoryQuota(QuotaPolicy(capacity, REFILL_SECONDS), clock)
    fingerprinter = Fingerprinter(PEPPER)
    limits = DiscoveryLimits.for_messages(max_batch, MAX_MESSAGE_BYTES)
    oprf_key = OprfKey.from_pepper(PEPPER)
    buckets = BucketServer(store, MAX_MESSAGE_BYTES)
    accounts = Accounts(store, open_accounts=dev_mode)
    heavy = InlineWork()
    private = PrivateDiscovery(BlindEvaluator(oprf_key, max_batch), buckets, quota, accounts, heavy)
    tokens = ResyncTokens.from_peppers(PEPPER, ttl_seconds=TOKEN_TTL, clock=clock)
    discovery = DiscoveryService(store, limits, quota, tokens=tokens, accounts=accounts)
    # One process: a RowPreparer of one prepares on a thread, as a small import does.
    preparer = RowPreparer(PEPPER, processes=1)
    registry = RegistryService(
        store, fingerprinter, oprf_key, max_batch=max_batch, preparer=preparer
    )
    routing = RoutingService(store, fingerprinter, max_batch)
    if account is not None:
        own = fingerprinter.fingerprint(onnet.contact_hash(ACCOUNT_NUMBER))
        store.register_now(account, own, False)
    return Core(
        clock, store, quota, fingerprinter, oprf_key, heavy, discovery, private, registry, routing
    )


MakeCore = Callable[..., Core]
"""The ``make_core`` fixture: ``build_core`` with its options, the store closed after the test."""


def packed(*numbers: str) -> bytes:
    """The contact hashes of E.164 ``numbers``, packed in order."""
    return b"".join(onnet.contact_hash(number) for number in numbers)


def numbers(count: int, first: int = 100) -> list[str]:
    """``count`` distinct valid E.164 numbers (San Francisco's 555-01xx range and on)."""
    return [f"+1415555{n:04d}" for n in range(first, first + count)]
