"""Discovery: packed contact hashes in, the matching discoverable users out.

Every call is made by an account (from its credential) and is charged against that
account's quota of new numbers (P4): each distinct hash that the account's re-sync token
does not cover costs one unit. Users who blocked the number the account holds are left out
of its matches (P5), so they look exactly like numbers that are not registered (P7), to a
stopwatch too: duplicate hashes collapse before the lookup, and a blocker, a hidden user and
an unknown number go through the same compiled probe and filters.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnet.protocol import CONTACT_HASH_SIZE, CONTACT_HASH_VERSION, MESSAGE_OVERHEAD_BYTES
from onnet_server.core.accounts import Accounts
from onnet_server.core.errors import InvalidArgument
from onnet_server.core.ports import BatchLookup, Matches, QuotaStore, RegistryStore
from onnet_server.core.quota import refuse_over_quota
from onnet_server.core.resync import ResyncTokens
from onnet_server.core.validation import check_packed_hashes
from onnet_server.core.wire_answers import decode_matches

__all__ = [
    "DiscoveryAnswer",
    "DiscoveryLimits",
    "DiscoveryParameters",
    "DiscoveryService",
]


@dataclass(frozen=True)
class DiscoveryLimits:
    """Bounds on one Discover call."""

    max_batch: int
    """Most hashes in ``hashes``."""
    max_previous: int
    """Most hashes in ``previous_hashes``, and in ``removed_hashes``."""
    max_message_bytes: int
    """The transport's limit on a request, announced to clients."""

    @classmethod
    def for_messages(cls, max_batch: int, max_message_bytes: int) -> DiscoveryLimits:
        """The limits of requests below ``max_message_bytes``: what a full batch leaves.

        A re-sync token may cover a whole address book, which can span several batches, so
        ``max_previous`` is every hash that fits beside a full batch. GetConfig announces it:
        computed here once, never again by a client.
        """
        fits = (max_message_bytes - MESSAGE_OVERHEAD_BYTES) // CONTACT_HASH_SIZE
        return cls(max_batch, max(0, fits - max_batch), max_message_bytes)


@dataclass(frozen=True)
class DiscoveryParameters:
    """What GetConfig announces."""

    contact_hash_version: int
    max_batch: int
    max_previous: int
    max_message_bytes: int
    quota_remaining: int


@dataclass(frozen=True)
class DiscoveryAnswer:
    """One Discover call's answer: its serialized DiscoverResponse, and the token in it."""

    encoded: bytes
    """The DiscoverResponse (matches and token) as the index wrote it, ready to send."""
    token: bytes
    """The re-sync token that covers the call's hashes."""
    match_count: int
    """How many positions matched."""

    @property
    def matches(self) -> Matches:
        """The matches, read back from ``encoded`` (for tools and tests)."""
        return decode_matches(self.encoded)


class DiscoveryService:
    """Matches uploads against the registry. Keeps nothing of what it is sent."""

    def __init__(
        self,
        store: RegistryStore,
        limits: DiscoveryLimits,
        quota: QuotaStore,
        *,
        tokens: ResyncTokens,
        accounts: Accounts,
    ) -> None:
        """Serve lookups from ``store`` to ``accounts``, charging ``quota``, issuing ``tokens``.

        The lookup's fingerprints are those of ``tokens``' current pepper: one AES pass over
        a batch gives both the registry's keys and the token's set values, and the lookup
        job that makes them also gives the batch's set digest.
        """
        self._store = store
        self._lookup_key = tokens.fingerprinter.lookup_key
        self._limits = limits
        self._quota = quota
        self._tokens = tokens
        self._accounts = accounts

    async def parameters(self, account: str) -> DiscoveryParameters:
        """The parameters ``account`` needs before it uploads, its quota left included.

        The same accounts as ``discover`` are served: a stranger learns nothing, not even
        the limits.
        """
        self._accounts.blockers(account)  # refuses an account the registry does not know
        return DiscoveryParameters(
            contact_hash_version=CONTACT_HASH_VERSION,
            max_batch=self._limits.max_batch,
            max_previous=self._limits.max_previous,
            max_message_bytes=self._limits.max_message_bytes,
            quota_remaining=await self._quota.remaining(account),
        )

    async def discover(
        self,
        account: str,
        hashes: bytes,
        token: bytes,
        previous_hashes: bytes,
        *,
        added_hashes: bytes = b"",
        removed_hashes: bytes = b"",
    ) -> DiscoveryAnswer:
        """Match packed 32-byte ``hashes`` for ``account``.

        With a token, either form proves what it covers, and those hashes cost nothing:
        the old one, ``previous_hashes`` exactly what ``token`` covers; or the difference
        form (``previous_hashes`` empty), ``token`` covering ``hashes`` without
        ``added_hashes`` plus ``removed_hashes``. The call is refused whole (nothing
        matched, nothing charged) when the new hashes do not fit the account's quota.
        """
        blockers = self._accounts.blockers(account)
        check_packed_hashes("hashes", hashes, max_count=self._limits.max_batch, allow_empty=False)
        changed = previous_hashes or added_hashes or removed_hashes
        if changed:  # not the commonest call
            self._check_token_fields(token, previous_hashes, added_hashes, removed_hashes)
        # One job, off the event loop where the store can: the keyed fingerprints (the
        # registry's keys, and the re-sync token's set values), the batch as a set, the
        # probe, and for the commonest calls (a first sync, an unchanged book re-synced)
        # the next token. A call refused below has looked up for nothing, and answers
        # nothing.
        step = None if changed else self._tokens.step(account, token)
        batch = await self._store.look_up_batch(hashes, self._lookup_key, blockers, step=step)
        next_token = step.next_token() if step is not None else None
        if next_token is not None:
            # A first sync is charged each distinct hash; a token the step renewed covers
            # every hash of the batch, so the re-sync costs nothing.
            cost = 0 if token else batch.distinct
        elif not token:  # a first sync whose step failed (libcrypto): the Python path issues
            cost, next_token = self._tokens.first_sync(account, hashes, batch.fingerprints)
        elif not previous_hashes:
            cost, next_token = self._tokens.renew_difference(
                account,
                token,
                hashes,
                added_hashes,
                removed_hashes,
                fingerprints=batch.fingerprints,
            )
        else:
            cost, next_token = self._tokens.renew(
                account, token, previous_hashes, hashes, fingerprints=batch.fingerprints
            )
        if cost:
            refuse_over_quota(await self._quota.charge(account, cost), "hashes", cost)
        return self._answer(batch, next_token)

    @staticmethod
    def _answer(batch: BatchLookup, token: bytes) -> DiscoveryAnswer:
        """``batch``'s answer, carrying ``token``."""
        encoded, match_count = batch.answer(token)
        return DiscoveryAnswer(encoded, token, match_count)

    def _check_token_fields(
        self, token: bytes, previous_hashes: bytes, added_hashes: bytes, removed_hashes: bytes
    ) -> None:
        """Each field that proves what a token covers is well formed, and has its token."""
        token_fields = {
            "previous_hashes": (previous_hashes, self._limits.max_previous, "covers them"),
            "added_hashes": (added_hashes, self._limits.max_batch, "they are added to"),
            "removed_hashes": (removed_hashes, self._limits.max_previous, "covers them"),
        }
        for field, (packed, most, token_that) in token_fields.items():
            check_packed_hashes(field, packed, max_count=most, allow_empty=True)
            if packed and not token:
                raise InvalidArgument(field, f"needs the token that {token_that}")
        if previous_hashes and (added_hashes or removed_hashes):
            field = "added_hashes" if added_hashes else "removed_hashes"
            raise InvalidArgument(field, "belongs to the difference form: no previous_hashes")
