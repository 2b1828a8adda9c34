"""The registry's Lua scripts: every multi-key change in one atomic step on one slot.

Each write script touches only the keys of one user's group (KEYS: bucket, stream, seq,
version, blocklist; see redis_layout), bumps the group's version and sequence, and appends
the change to the group's stream in the same step, so a reader of the stream never misses
a change. A stream entry says only which user changed (op, user, seq; an erasure also its
version), never a fingerprint or a private-mode entry: readers take the user's current
record or blocklist from where it lives. Scripts are sent by SHA and re-sent whole when
Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH).
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from onnet_server.spans import redis_span

__all__ = [
    "BLOCK",
    "DROP_IF_STALE",
    "IMPORT",
    "POSITION",
    "RECORDS",
    "REGISTER",
    "UNREGISTER",
    "Script",
]

# Shared prologue: the next version of the group: at least Redis's clock in microseconds,
# above the group's last version, and at least `floor` (the caller's view of the version it
# must beat: clocks of different cluster masters need not agree).
_NEXT_VERSION = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local version = math.max(now, tonumber(redis.call('GET', KEYS[4]) or '0') + 1, floor)
redis.call('SET', KEYS[4], string.format('%.0f', version))
local seq = redis.call('INCR', KEYS[3])
"""

_REGISTER_LUA = (
    """-- ARGV: user_id, fingerprint (16 bytes), flags (1 byte), stream maxlen, version floor,
-- private-mode entry (may be empty)
local floor = tonumber(ARGV[5])
local old = redis.call('HGET', KEYS[1], ARGV[1])
"""
    + _NEXT_VERSION
    + """
local value = ARGV[2] .. ARGV[3] .. struct.pack('>I7', version) .. ARGV[6]
redis.call('HSET', KEYS[1], ARGV[1], value)
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'op', 'put', 'user', ARGV[1],
                     'seq', seq)
return {old or '', string.format('%.0f', version), seq, id}
"""
)

# Shared epilogue of an erasure and of a displacement, so that both leave the same traces:
# the user ARGV[1]'s record and blocklist go, and so do the user's earlier changes in the
# stream (they name the user; those an older release wrote also hold a fingerprint). Only
# the erasure event itself, which names the user, stays until trimmed. Needs `maxlen`.
_ERASE = """
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
  local fields = entry[2]
  for j = 1, #fields - 1, 2 do
    if fields[j] == 'user' and fields[j + 1] == ARGV[1] then
      redis.call('XDEL', KEYS[2], entry[1])
    end
  end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[5])
local erased = string.format('%.0f', version)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*',
           'op', 'del', 'user', ARGV[1], 'version', erased, 'seq', seq)
return erased
"""

_UNREGISTER_LUA = (
    """-- ARGV: user_id, stream maxlen
-- Erasure: every trace of the user goes (see the epilogue).
local maxlen, floor = ARGV[2], 0
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
"""
    + _NEXT_VERSION
    + _ERASE
)

_DROP_IF_STALE_LUA = (
    """-- ARGV: user_id, fingerprint, winning version, stream maxlen, lost a tie ('1': the
-- caller found the user's id below the holder's, for a claim of the winning version)
-- Removes a user whose number was registered by someone else, unless their record changed
-- since (another number, or a newer claim on this one), as an erasure would.
local maxlen, floor = ARGV[4], 0
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old or string.sub(old, 1, 16) ~= ARGV[2] then return 0 end
local version, winning = struct.unpack('>I7', old, 18), tonumber(ARGV[3])
if version > winning or (version == winning and ARGV[5] ~= '1') then return 0 end
"""
    + _NEXT_VERSION
    + _ERASE
)

_IMPORT_LUA = """-- KEYS: stream, seq, version of one group, then the bucket key of each user.
-- ARGV: stream maxlen, then user_id, fingerprint, flags, version floor, private entry for
-- each user. Each user is written as REGISTER would; the whole batch of the group in one step.
local count = (#ARGV - 1) / 5
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local versions, updated, ids = {}, {}, {}
local first_seq = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
for i = 1, count do
  local base = 5 * (i - 1) + 1
  local user, fingerprint, flags = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local bucket = KEYS[3 + i]
  local version = math.max(now, last + 1, tonumber(ARGV[base + 4]))
  last = version
  local seq = redis.call('INCR', KEYS[2])
  local value = fingerprint .. flags .. struct.pack('>I7', version) .. ARGV[base + 5]
  updated[i] = redis.call('HSET', bucket, user, value) == 0 and 1 or 0
  ids[i] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'op', 'put', 'user', user,
                      'seq', seq)
  versions[i] = string.format('%.0f', version)
end
redis.call('SET', KEYS[3], string.format('%.0f', last))
return {versions, updated, first_seq, ids}
"""

_BLOCK_LUA = """-- ARGV: user_id, fingerprint, stream maxlen, 1 to block or 0 to unblock, the most
-- blocks a user may have.
-- Returns -1 for an unknown user, -2 for a full blocklist, 0 for no change, 1 for a change.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local op
if ARGV[4] == '1' then
  if redis.call('SISMEMBER', KEYS[5], ARGV[2]) == 1 then return 0 end
  if redis.call('SCARD', KEYS[5]) >= tonumber(ARGV[5]) then return -2 end
  redis.call('SADD', KEYS[5], ARGV[2])
  op = 'block'
else
  if redis.call('SREM', KEYS[5], ARGV[2]) == 0 then return 0 end
  op = 'unblock'
end
local seq = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'op', op, 'user', ARGV[1], 'seq', seq)
return 1
"""

_RECORDS_LUA = """-- KEYS: the bucket key of each user, all of one group. ARGV: the users.
-- Each user's record, or '' for a user who has none (a Lua table cannot hold a nil).
local records = {}
for i = 1, #ARGV do
  records[i] = redis.call('HGET', KEYS[i], ARGV[i]) or ''
end
return records
"""

_POSITION_LUA = """-- KEYS: stream, seq. The last change's id and sequence number, read together.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {id, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""


class Script:
    """A Lua script sent by SHA, and re-sent whole on NOSCRIPT."""

    def __init__(self, source: str, name: str) -> None:
        """Wrap ``source``; nothing is sent until the first call.

        ``name`` says what the script does, in the span of each call (never its keys).
        """
        self.source = source
        self.name = name
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, client: Redis | RedisCluster, keys: list[str], args: list[bytes | str | int]
    ) -> Any:  # noqa: ANN401 - Lua replies are untyped
        """Run the script on ``keys`` with ``args``."""
        with redis_span(self.name):
            try:
                return await client.evalsha(self.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(self.source, len(keys), *keys, *args)


REGISTER = Script(_REGISTER_LUA, "register")
"""Add or move a user. Returns [previous record or "", new version, its entry's seq and id]."""
UNREGISTER = Script(_UNREGISTER_LUA, "unregister")
"""Erase a user. Returns the version of the erasure, or 0 when there was no such user."""
DROP_IF_STALE = Script(_DROP_IF_STALE_LUA, "drop_if_stale")
"""Remove a user who lost their number to a newer claim. Returns the version, or 0."""
POSITION = Script(_POSITION_LUA, "position")
"""The group's last stream id and sequence number."""
RECORDS = Script(_RECORDS_LUA, "records")
"""The current records of some users of one group, in one command ('' for none)."""
IMPORT = Script(_IMPORT_LUA, "import")
"""Register a batch of one group's users.

Returns [versions, updated flags, the first user's entry's seq (the others' follow it), the
entries' ids]."""
BLOCK = Script(_BLOCK_LUA, "block")
"""Block or unblock a number for a user. Returns 1, 0, -1 (no such user) or -2 (full)."""
