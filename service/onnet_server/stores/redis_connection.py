"""Connecting to Redis or Redis Cluster, and telling "the store is down" apart from bugs."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["STORE_DOWN", "RedisClient", "connect", "connect_and_run", "describe", "scan_keys"]

_log = logging.getLogger(__name__)

RedisClient = Redis | RedisCluster
_Result = TypeVar("_Result")

STORE_DOWN: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    RedisClusterException,
    ClusterDownError,
    MasterDownError,
    TryAgainError,
    ConnectionError,
    OSError,
)
"""Exceptions that mean "Redis cannot be reached now" rather than a bug."""
_CONNECT_FAILURES: tuple[type[Exception], ...] = (RedisError, *STORE_DOWN)

# Writes must fail fast when Redis is gone (the caller gets UNAVAILABLE and retries), so the
# client itself does not retry and does not wait long for a connection.
_CONNECT_TIMEOUT = 1.0
_COMMAND_TIMEOUT = 5.0


def connect(redis_url: str | None, cluster_nodes: str | None) -> RedisClient:
    """A client for ``redis://...`` or for a cluster given as "HOST:PORT[,HOST:PORT...]"."""
    no_retry = Retry(NoBackoff(), 0)
    if cluster_nodes:
        nodes = []
        for part in cluster_nodes.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"cluster node {part.strip()!r} is not HOST:PORT")
            nodes.append(ClusterNode(host, int(port)))
        return RedisCluster(
            startup_nodes=nodes,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_COMMAND_TIMEOUT,
            retry=no_retry,
        )
    if redis_url is None:
        raise ValueError("either a Redis URL or cluster nodes are needed")
    return Redis.from_url(
        redis_url,
        socket_connect_timeout=_CONNECT_TIMEOUT,
        socket_timeout=_COMMAND_TIMEOUT,
        retry=no_retry,
    )


async def scan_keys(client: RedisClient, pattern: str) -> list[str]:
    """Every key matching ``pattern``, each once (SCAN may return a key more than once)."""
    found = [
        key.decode() if isinstance(key, bytes) else key
        async for key in client.scan_iter(match=pattern, count=10_000)
    ]
    return list(dict.fromkeys(found))


def describe(redis_url: str | None, cluster_nodes: str | None) -> str:
    """Where the store is, for log lines: host and port only, never a password."""
    if cluster_nodes:
        return f"Redis Cluster {cluster_nodes}"
    parts = urlsplit(redis_url or "")
    return f"Redis at {parts.hostname}:{parts.port or 6379}"


async def connect_and_run(
    redis_url: str | None,
    cluster_nodes: str | None,
    first_use: Callable[[RedisClient], Awaitable[_Result]],
    *,
    max_backoff: float = 10.0,
) -> _Result:
    """Connect and run ``first_use`` on the client (say, loading a snapshot), with retries.

    Both are retried together, with exponential backoff and jitter, until they succeed:
    Redis may vanish between connecting and loading; one loop covers both. Each failure is
    one log line saying where and when the next try is, never a traceback.
    """
    where = describe(redis_url, cluster_nodes)
    backoff = 0.2
    while True:
        client = connect(redis_url, cluster_nodes)
        try:
            result = await first_use(client)
        except _CONNECT_FAILURES as error:
            await client.aclose()
            wait = random.uniform(backoff / 2, backoff)  # noqa: S311 - jitter, not a secret
            _log.warning(
                "cannot reach %s (%s); retrying in %.1f s", where, type(error).__name__, wait
            )
            await asyncio.sleep(wait)
            backoff = min(max_backoff, backoff * 2)
            continue
        _log.info("connected to %s", where)
        return result
