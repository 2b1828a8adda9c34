"""The quota in Redis or Redis Cluster: one bucket per account, shared by every process.

Layout: one hash per account, ``{prefix}:q:{<digest>}`` with fields ``level`` (units, as
"%.17g" so that the float survives the trip exactly) and ``at`` (Redis TIME in
microseconds when it was last written). ``<digest>`` is the first 16 hex digits of the
account id's SHA-256: the id itself never appears in a key, so a key scan (or a slow log)
does not list accounts; the braces make the digest the cluster hash tag. 64 bits of digest
make two accounts sharing a bucket a non-event below billions of accounts.

Each charge is one Lua script: read, leak, decide, write and set the key's expiry in one
atomic step, on Redis's clock (TIME), so that every server process leaks buckets at the same
pace whatever their own clocks say.
"""

from __future__ import annotations

import hashlib

from onnet_server.core.errors import StoreUnavailable
from onnet_server.core.quota import QuotaDecision, QuotaPolicy, check_charge
from onnet_server.stores.redis_connection import STORE_DOWN, RedisClient
from onnet_server.stores.redis_scripts import Script

__all__ = ["RedisQuota"]

_CHARGE = Script(
    """-- KEYS[1]: the account's bucket {level, at}. ARGV: count, capacity, rate (units per
-- second), slack (units). Returns {allowed, remaining, retry_after or '', never}.
-- A transcription of core.quota: leak, then apply_charge, with remaining_of.
local count, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local rate, slack = tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local stored = redis.call('HMGET', KEYS[1], 'level', 'at')
local level, at = tonumber(stored[1]) or 0, tonumber(stored[2]) or now
level = math.max(0, level - math.max(0, (now - at) / 1000000) * rate)
local function remaining(l) return math.min(capacity, math.floor(capacity - l + slack)) end
if count > capacity then return {0, remaining(level), '', 1} end
if count == 0 then return {1, remaining(level), '', 0} end
local excess = level + count - capacity
if excess > slack then
  return {0, remaining(level), string.format('%.17g', excess / rate), 0}
end
level = level + count
-- A clock that stepped back (a failover) must not make the next call leak the same time twice.
redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level),
           'at', string.format('%.0f', math.max(now, at)))
-- The key lives until its level has leaked to 0 (what a missing key means), plus a second:
-- idle accounts cost nothing.
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil(level / rate * 1000) + 1000))
return {1, remaining(level), '', 0}
""",
    "quota_charge",
)


class RedisQuota:
    """Buckets in Redis, one hash per account, changed only by one atomic script."""

    def __init__(self, client: RedisClient, policy: QuotaPolicy, *, prefix: str = "onnet") -> None:
        """Use ``client`` (standalone or cluster); keys start with ``prefix``."""
        self.policy = policy
        """The capacity and refill period of every bucket."""
        self._client = client
        self._prefix = prefix
        # Sent as text that parses back to the very same floats the memory store computes.
        self._policy_args = [str(policy.capacity), repr(policy.rate), repr(policy.slack)]

    async def charge(self, account: str, count: int) -> QuotaDecision:
        """Charge ``count`` units to ``account``: all of them, or none if they do not fit."""
        check_charge(account, count)
        keys = [self._key(account)]
        try:
            allowed, remaining, retry_after, never = await _CHARGE(
                self._client, keys, [count, *self._policy_args]
            )
        except STORE_DOWN as error:
            raise StoreUnavailable("", "the quota store is unavailable") from error
        return QuotaDecision(
            allowed=bool(allowed),
            remaining=int(remaining),
            retry_after=float(retry_after) if retry_after else None,
            never=bool(never),
        )

    async def remaining(self, account: str) -> int:
        """Whole units ``account`` may charge now (a charge of 0: it changes nothing)."""
        return (await self.charge(account, 0)).remaining

    def _key(self, account: str) -> str:
        digest = hashlib.sha256(account.encode()).hexdigest()[:16]
        return f"{self._prefix}:q:{{{digest}}}"
