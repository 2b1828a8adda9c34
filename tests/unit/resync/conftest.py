"""Fixtures of the re-sync token tests: a standing clock and a pepper rotation's keys."""

from __future__ import annotations

import pytest

from onnet_server.core.resync import ResyncKey, ResyncTokens, derive_resync_key
from tests.unit.resync.support import NEW_PEPPER, OLD_PEPPER, TTL, Clock


@pytest.fixture
def clock() -> Clock:
    """A clock standing at NOW."""
    return Clock()


@pytest.fixture
def keyring() -> dict[bytes, ResyncKey]:
    """The keyring of a pepper rotation: the old pepper's key, then the new one's."""
    return dict([derive_resync_key(OLD_PEPPER), derive_resync_key(NEW_PEPPER)])


@pytest.fixture
def tokens(keyring: dict[bytes, ResyncKey], clock: Clock) -> ResyncTokens:
    """Tokens issued under the new pepper's key, on ``clock``."""
    return ResyncTokens(keyring, list(keyring)[-1], TTL, clock=clock)


@pytest.fixture
def old_tokens(keyring: dict[bytes, ResyncKey], clock: Clock) -> ResyncTokens:
    """Tokens issued under the old pepper's key (before the rotation), on ``clock``."""
    return ResyncTokens(keyring, next(iter(keyring)), TTL, clock=clock)
