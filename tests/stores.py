"""Open each kind of registry store for tests: memory, Redis, Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from onnet_server.core.ports import RegistryStore
from onnet_server.stores.memory import MemoryRegistry
from onnet_server.stores.redis_connection import connect
from onnet_server.stores.redis_store import RedisRegistry

STORE_KINDS = ["memory", "redis", "cluster"]


@asynccontextmanager
async def open_redis_store(
    redis_url: str | None = None,
    cluster: str | None = None,
    *,
    position_check_interval: float = 5.0,
) -> AsyncIterator[RedisRegistry]:
    client = connect(redis_url, cluster)
    if cluster:
        await client.initialize()
    store = RedisRegistry(client, position_check_interval=position_check_interval)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def open_store(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[RegistryStore]:
    if kind == "memory":
        yield MemoryRegistry()
    elif kind == "redis":
        async with open_redis_store(request.getfixturevalue("redis_url")) as store:
            yield store
    else:
        async with open_redis_store(cluster=request.getfixturevalue("cluster_seeds")) as store:
            yield store
