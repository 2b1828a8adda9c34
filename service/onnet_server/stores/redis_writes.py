"""A Redis registry's writes: each change to Redis first, in one atomic script, then to the index.

Redis is the source of truth: a registration, an erasure or a block is written there by one
script (redis_scripts.py) that also appends it to its group's change stream, which every
process's feed follows (redis_feed.py). The writing process applies its own change to its
index at once, so that its next lookup sees it, and with the change's place in the stream, so
that its own feed passes a registration's entry without reading the record back (an import
would otherwise cost this process every row twice).

A number is held by its newest claim, by (version, user id); a registration that takes a
number from someone also removes the loser from Redis (``settle``), which any process may
do, as often as it likes.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import cast

from redis.exceptions import RedisError

from onnet_server.core.blocklists import MAX_BLOCKED, blocklist_full
from onnet_server.core.errors import StoreUnavailable
from onnet_server.core.fingerprint import FINGERPRINT_SIZE
from onnet_server.core.ports import Registration, UserRow
from onnet_server.spans import redis_span
from onnet_server.stores.index_rebuild import Rebuilder
from onnet_server.stores.redis_connection import STORE_DOWN
from onnet_server.stores.redis_layout import flags_byte
from onnet_server.stores.redis_scripts import BLOCK, DROP_IF_STALE, IMPORT, REGISTER, UNREGISTER
from onnet_server.stores.redis_state import RegistryState

__all__ = ["RedisWriter"]

_log = logging.getLogger(__name__)


class RedisWriter:
    """Registrations, erasures and blocks: to Redis, then to this process's index."""

    def __init__(self, state: RegistryState, rebuilder: Rebuilder) -> None:
        """Write through ``state``'s connection; tell ``rebuilder`` of every change."""
        self._state = state
        self._rebuilder = rebuilder

    async def set_blocked(self, user_id: str, fingerprint: bytes, blocked: bool) -> bool | None:
        """Block or unblock in Redis first, then in this process's blocklists.

        Blocks carry no version, so the two steps hold the feed's lock: the feed cannot
        apply a later change to the same list between them and then be undone by this one.
        """
        state = self._state
        keys = state.layout.user_keys(user_id)
        args: list[bytes | str | int] = [
            user_id, fingerprint, state.stream_maxlen, int(blocked), MAX_BLOCKED,
        ]  # fmt: skip
        async with state.feed_lock:
            outcome = int(cast(int, await state.run(BLOCK, keys, args)))
            if outcome == -1:
                return None
            if outcome == -2:
                raise blocklist_full()
            if blocked:
                state.blocklists.add(user_id, fingerprint)
            else:
                state.blocklists.remove(user_id, fingerprint)
        return outcome == 1

    async def register(
        self, user_id: str, fingerprint: bytes, discoverable: bool, private_entry: bytes = b""
    ) -> Registration:
        """Write the registration to Redis, then to this process's index."""
        if len(fingerprint) != FINGERPRINT_SIZE:
            raise ValueError("a fingerprint is 16 bytes")
        state = self._state
        keys = state.layout.user_keys(user_id)
        previous = state.index.holder_claim(fingerprint)
        args: list[bytes | str | int] = [
            user_id, fingerprint, flags_byte(discoverable), state.stream_maxlen,
            _floor(previous), private_entry,
        ]  # fmt: skip
        old, version_text, seq, entry_id = cast(
            tuple[bytes, bytes, int, bytes], await state.run(REGISTER, keys, args)
        )
        group = state.layout.group_of(user_id)[0]
        row = UserRow(user_id, fingerprint, discoverable, private_entry)
        self._apply_own(row, int(version_text), group, seq, entry_id)
        if not await self.settle(fingerprint):
            state.forget_own_put(group, seq)  # the feed settles it again
        return Registration(updated=bool(old), displaced_user_id=_displaced(previous, user_id))

    async def register_many(self, users: list[UserRow]) -> list[Registration]:
        """Write a batch: one IMPORT script per group, all groups in one pipelined round trip.

        Rows that share a user or a number with another row of the batch are written after
        the others, one by one in batch order, so that they take effect in that order.
        """
        if any(len(row.fingerprint) != FINGERPRINT_SIZE for row in users):
            raise ValueError("a fingerprint is 16 bytes")
        user_count = Counter(row.user_id for row in users)
        number_count = Counter(row.fingerprint for row in users)
        independent = [
            position
            for position, row in enumerate(users)
            if user_count[row.user_id] == 1 and number_count[row.fingerprint] == 1
        ]
        outcome: dict[int, Registration] = {}
        if independent:
            outcome.update(await self._write_independent(users, independent))
        for position, row in enumerate(users):
            if position not in outcome:
                outcome[position] = await self.register(*row)
        return [outcome[position] for position in range(len(users))]

    async def _write_independent(
        self, users: list[UserRow], positions: list[int]
    ) -> dict[int, Registration]:
        state = self._state
        previous = {p: state.index.holder_claim(users[p].fingerprint) for p in positions}
        by_group: dict[int, list[tuple[int, str]]] = {}
        for position in positions:
            group, bucket = state.layout.group_of(users[position].user_id)
            by_group.setdefault(group, []).append(
                (position, state.layout.bucket_key(group, bucket))
            )
        pipe = state.client.pipeline(transaction=False)
        for group, members in by_group.items():
            args: list[bytes | str | int] = [state.stream_maxlen]
            for position, _ in members:
                user_id, fp, discoverable, entry = users[position]
                args += [user_id, fp, flags_byte(discoverable), _floor(previous[position]), entry]
            keys = state.layout.group_keys(group) + [bucket for _, bucket in members]
            pipe.eval(IMPORT.source, len(keys), *keys, *args)
        try:
            with redis_span("import", commands=len(by_group)) as span:
                span.set_attribute("onnet.rows", len(positions))
                replies = await pipe.execute()
        except STORE_DOWN as error:
            raise StoreUnavailable("", "the registry store is unavailable") from error
        written: dict[int, bool] = {}
        places: dict[int, tuple[int, int]] = {}  # (group, seq) of each row's entry
        for (group, members), (versions, updated, first_seq, entry_ids) in zip(
            by_group.items(), replies, strict=True
        ):
            for offset, ((position, _), version, was_there, entry_id) in enumerate(
                zip(members, versions, updated, entry_ids, strict=True)
            ):
                seq = first_seq + offset
                self._apply_own(users[position], int(version), group, seq, entry_id)
                places[position] = (group, seq)
                written[position] = bool(was_there)
        outcome = {}
        for position, was_there in written.items():
            user_id, fp = users[position].user_id, users[position].fingerprint
            if not await self.settle(fp):
                state.forget_own_put(*places[position])  # the feed settles it again
            outcome[position] = Registration(was_there, _displaced(previous[position], user_id))
        return outcome

    def _apply_own(self, row: UserRow, version: int, group: int, seq: int, entry_id: bytes) -> None:
        """Apply this process's own registration, written as entry ``seq`` of ``group``.

        Unless the feed got there first: it may read the entry before the write's reply
        comes back, and then applied what Redis held by then, this registration or what
        came after it (a move, an erasure). Applying the reply on top of that could bring
        back a user erased since, as an index keeps no trace of an erasure.
        """
        state = self._state
        if not state.applied_own_put(group, seq, entry_id):
            return
        state.index.put(
            row.user_id, row.fingerprint, version, row.discoverable, row.private_entry,
            position=(group, seq),
        )  # fmt: skip
        self._rebuilder.note_change()

    async def settle(self, fingerprint: bytes) -> bool:
        """Remove from Redis every claim on ``fingerprint`` that lost it to a newer one.

        Any process may do this, as often as it likes: the script removes a claim only if it
        still names this number and lost to the winner. A failure is left for the next
        change of that number, the feed, or the next snapshot load, to finish. True when
        nothing was left.
        """
        for user_id, winning_version, winner in self._state.index.shadowed_of(fingerprint):
            try:
                await self._drop_stale(user_id, fingerprint, winning_version, winner)
            except (StoreUnavailable, RedisError) as error:
                _log.warning("a displaced claim stays until later: %s", type(error).__name__)
                return False
        return True

    async def unregister(self, user_id: str) -> bool:
        """Erase the user in Redis (the change reaches every index through the stream)."""
        state = self._state
        keys = state.layout.user_keys(user_id)
        version = await state.run(UNREGISTER, keys, [user_id, state.stream_maxlen])
        if not version:
            return False
        self._erase(user_id, int(cast(bytes, version)))
        return True

    def _erase(self, user_id: str, version: int) -> None:
        """Apply this process's own erasure (or displacement) to its index and blocklists.

        The blocklist goes unless a newer registration of the user already reached the
        index through the feed, whose blocklist the feed keeps as Redis has it.
        """
        state = self._state
        state.index.delete(user_id, version)
        self._rebuilder.note_change()
        if state.index.record(user_id) is None:
            state.blocklists.drop_user(user_id)

    async def _drop_stale(
        self, user_id: str, fingerprint: bytes, winning_version: int, winner: str
    ) -> bool:
        """Remove a user whose number went to a newer claim; True if removed.

        Newer by (version, user id), as the index decides: at equal versions the greater
        id holds the number. The script compares versions; the ids are compared here, in
        Python's order (Redis's Lua compares strings by the server's locale).
        """
        state = self._state
        keys = state.layout.user_keys(user_id)
        lost_a_tie = "1" if user_id < winner else "0"
        args: list[bytes | str | int] = [
            user_id, fingerprint, winning_version, state.stream_maxlen, lost_a_tie,
        ]  # fmt: skip
        version = await state.run(DROP_IF_STALE, keys, args)
        if not version:
            return False
        self._erase(user_id, int(cast(bytes, version)))
        return True


def _floor(previous: tuple[str, int] | None) -> int:
    """The least version that beats the number's holder, as this process knows it."""
    return previous[1] + 1 if previous is not None else 0


def _displaced(previous: tuple[str, int] | None, user_id: str) -> str | None:
    """Who a registration took the number from: the holder this process saw before writing.

    Any process may be the one that removes the loser from Redis, so the answer comes from
    the writer's own view, not from who ran the removal.
    """
    return previous[0] if previous is not None and previous[0] != user_id else None
