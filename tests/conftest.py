"""Shared fixtures (real servers on ephemeral loopback ports), and the suite's layers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.redis_servers import (
    RedisClusterProcesses,
    RedisProcess,
    redis_cluster,
    redis_server,
)
from tests.servers import ThreadedServer, fresh_config

if TYPE_CHECKING:
    from tests.tracing import SpanRecorder

_INTEGRATION_LAYERS = tuple(
    Path(__file__).parent / layer for layer in ("integration", "hostile", "contract")
)
"""Directories whose every test needs real servers or stores (bench/conftest.py marks bench)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of the integration layers ``integration``.

    ``-m "not integration"`` then runs the fast unit layer alone; the few unit tests that
    start a server or run protoc carry the mark themselves.
    """
    for item in items:
        if any(item.path.is_relative_to(layer) for layer in _INTEGRATION_LAYERS):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def make_server() -> Iterator[Callable[..., ThreadedServer]]:
    """Start servers with config overrides; every one is stopped after the test."""
    started: list[ThreadedServer] = []

    def make(**overrides: object) -> ThreadedServer:
        server = ThreadedServer(fresh_config(**overrides)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ThreadedServer]) -> ThreadedServer:
    """A server with default limits and an empty in-memory registry."""
    return make_server()


@pytest.fixture(scope="session")
def redis_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One redis-server for the session; tests that use it start from an empty keyspace."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster_nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterProcesses]:
    """A three-master Redis Cluster for the session, slots assigned by the fixture."""
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_url(redis_standalone: RedisProcess) -> str:
    """The session Redis, flushed before the test."""
    redis_standalone.client().flushall()
    return redis_standalone.url


@pytest.fixture
def cluster_seeds(redis_cluster_nodes: RedisClusterProcesses) -> str:
    """The session cluster's seed nodes, every master flushed before the test."""
    for node in redis_cluster_nodes.nodes:
        node.client().flushall()
    return redis_cluster_nodes.seeds


@pytest.fixture(scope="session")
def span_recorder() -> SpanRecorder:
    """OpenTelemetry's global tracer provider, set once for the session (tests/tracing.py)."""
    from tests.tracing import SpanRecorder  # only the tests of traces need OpenTelemetry

    return SpanRecorder.install()


@pytest.fixture
def recorded_spans(span_recorder: SpanRecorder) -> Iterator[SpanRecorder]:
    """The session's provider, recording every span the test makes (forgotten after)."""
    with span_recorder.recording():
        yield span_recorder
