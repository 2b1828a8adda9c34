"""Hashed discovery as a flow (no I/O here): the book in parts, each with its re-sync token.

Each part is one Discover request in the difference form (``onnet._resync``); a token the
server refuses is forgotten and the part is sent again without it (it pays again).
"""

from __future__ import annotations

from collections.abc import Sequence

from onnet._config import ServerConfig
from onnet._contact_hash import CONTACT_HASH_SIZE
from onnet._errors import InvalidArgumentError, ProtocolError
from onnet._plan import DiscoveryPlan, DiscoveryResult
from onnet._resync import PartSync, SyncState
from onnet._rpc import DISCOVER, Flow, ask
from onnet.v1 import discovery_pb2

__all__ = ["discover_hashed"]


def discover_hashed(
    plan: DiscoveryPlan, config: ServerConfig, state: SyncState
) -> Flow[DiscoveryResult]:
    """Discover ``plan``'s numbers by their contact hashes, ``state`` proving what is paid.

    ``config`` is the server's, checked. Two of these flows must not interleave over one
    ``state``: each would carry a token the other outdated.
    """
    matched: dict[int, str] = {}
    charged = 0
    for sync in state.syncs(plan.hashes, config.max_batch, _max_hashes(config)):
        sent, response = yield from _discover_part(sync, state)
        _collect(sync.positions, response, matched)
        charged += _charge_of(sent)
    return plan.result(matched, charged)


def _discover_part(
    sync: PartSync, state: SyncState
) -> Flow[tuple[PartSync, discovery_pb2.DiscoverResponse]]:
    """Send one part; what was sent in the end, and the answer."""
    try:
        response = yield from ask(DISCOVER, _discover_request(sync))
    except InvalidArgumentError as error:
        if not _token_refused(error, sync):
            raise
        sync = state.forget(sync)
        response = yield from ask(DISCOVER, _discover_request(sync))
    state.settle(sync, response.token)
    return sync, response


def _collect(
    positions: Sequence[int], response: discovery_pb2.DiscoverResponse, into: dict[int, str]
) -> None:
    """Place the matches of a request whose hashes sit at ``positions`` of the book."""
    indexes, users = response.matched_indexes, response.user_ids
    if len(indexes) != len(users) or any(i >= len(positions) for i in indexes):
        raise ProtocolError("malformed DiscoverResponse: matches that name no hash sent")
    for index, user_id in zip(indexes, users, strict=True):
        into[positions[index]] = user_id


def _charge_of(sent: PartSync) -> int:
    """The quota a sent part cost: its added hashes, or all of them without a token."""
    return len(sent.added_hashes if sent.token else sent.hashes) // CONTACT_HASH_SIZE


def _max_hashes(config: ServerConfig) -> int:
    """How many hashes one request may carry over all its fields, as the server announced."""
    return config.max_batch + config.previous_limit


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
