"""Shared fixtures: real servers on ephemeral loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.servers import ThreadedServer, fresh_config


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
