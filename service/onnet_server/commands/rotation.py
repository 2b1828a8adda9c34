"""Moving a Redis registry to a new pepper while the old one keeps serving.

The procedure (README, "Rotating the pepper"): a second fleet serves the new pepper under a
new key prefix in the same Redis; the account service, which holds the numbers, re-imports
every user into it and sends its changes to both fleets; blocklists are carried over here;
traffic moves; the old prefix is dropped. Lookups never stop.

Blocklists need no numbers to move: a fingerprint is AES under the pepper, a permutation,
so the old pepper gives back the hash prefix and the new pepper encrypts it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from onnet_server.core.fingerprint import FINGERPRINT_SIZE, Fingerprinter
from onnet_server.pepper import Pepper
from onnet_server.stores.redis_connection import RedisClient, scan_keys
from onnet_server.stores.redis_layout import Layout
from onnet_server.stores.redis_pepper import verify_pepper
from onnet_server.stores.redis_store import RedisRegistry

__all__ = ["BlocklistMove", "drop_registry", "move_blocklists"]

_log = logging.getLogger(__name__)
_CHUNK = 1000


@dataclass(frozen=True)
class BlocklistMove:
    """What ``move_blocklists`` did."""

    users: int
    """Users whose blocklist now exists under the new prefix."""
    blocks: int
    """Blocks written there (already present ones included)."""
    users_missing: int
    """Users with a blocklist under the old prefix but not registered under the new one
    (not imported yet, or gone): run the move again after the import."""


async def move_blocklists(
    client: RedisClient,
    old: Layout,
    new: Layout,
    old_pepper: bytes,
    new_pepper: bytes,
) -> BlocklistMove:
    """Copy every blocklist from ``old`` to ``new``, re-keyed to the new pepper.

    Idempotent: running it again (say, after more users were imported) only adds. Each
    block is written with the registry's own script, so it reaches the new fleet's
    processes through its change streams. Where a registry has its pepper recorded, the
    pepper given for it must be that one (PepperMismatch otherwise, before anything moves):
    blocks re-keyed from the wrong pepper would block numbers nobody asked to block.
    """
    if old.prefix == new.prefix:
        raise ValueError("the old and the new prefix must differ")
    await verify_pepper(client, old, Pepper.from_key(old_pepper), "ONNET_PREVIOUS_PEPPER_FILE")
    await verify_pepper(client, new, Pepper.from_key(new_pepper), "ONNET_PEPPER_FILE")
    source, target = Fingerprinter(old_pepper), Fingerprinter(new_pepper)
    destination = RedisRegistry(client, layout=new)  # writes only: no snapshot, no feed
    keys = [key for key in await scan_keys(client, old.group_pattern()) if old.is_blocks_key(key)]
    users = blocks = missing = 0
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.smembers(key)
        for key, members in zip(chunk, await pipe.execute(), strict=True):
            fingerprints = [m for m in members if len(m) == FINGERPRINT_SIZE]
            if not fingerprints:
                continue
            rekeyed = source.rekey(b"".join(fingerprints), target)
            user_id = old.user_of_blocks_key(key)
            written = 0
            for i in range(0, len(rekeyed), FINGERPRINT_SIZE):
                outcome = await destination.set_blocked(
                    user_id, rekeyed[i : i + FINGERPRINT_SIZE], blocked=True
                )
                if outcome is None:
                    break
                written += 1
            if written:
                users, blocks = users + 1, blocks + written
            else:
                missing += 1
    _log.info("blocklists moved: %d users, %d blocks, %d users missing", users, blocks, missing)
    return BlocklistMove(users, blocks, missing)


async def drop_registry(client: RedisClient, layout: Layout) -> int:
    """Delete every key of the registry under ``layout``'s prefix; return how many.

    The record of its pepper goes too, so the prefix can be used again with another one.
    Quota buckets have no registry prefix and stay: accounts keep what they spent.
    """
    ordered = sorted(
        {*await scan_keys(client, layout.group_pattern()), layout.epoch_key(), layout.pepper_key()}
    )
    deleted = 0
    for start in range(0, len(ordered), _CHUNK):
        pipe = client.pipeline(transaction=False)
        for key in ordered[start : start + _CHUNK]:
            pipe.delete(key)  # one key a command: keys of different slots on a cluster
        deleted += sum(int(n) for n in await pipe.execute())
    _log.info("registry under prefix %s dropped: %d keys", layout.prefix, deleted)
    return deleted
