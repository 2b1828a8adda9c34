"""The pepper a Redis registry was built with: recorded once, compared at every start.

A registry's fingerprints are keyed by its pepper; a server with another pepper would find
nobody and say nothing. So the first server on a prefix records the pepper's identity in one
key beside the registry, and every later one compares:

    onnet:pepper   hash  id -> the pepper's public id, check -> 32 hex digits

The check value is HMAC-SHA256 of a fixed label under the pepper, cut to 16 bytes: it proves
the key without revealing it (the key itself never leaves the process). One key, so Redis
Cluster needs no hash tag for it.
"""

from __future__ import annotations

import hashlib
import hmac

from onnet_server.config import ConfigError
from onnet_server.pepper import Pepper
from onnet_server.stores.redis_connection import RedisClient
from onnet_server.stores.redis_layout import Layout
from onnet_server.stores.redis_scripts import Script

__all__ = ["PepperMismatch", "pepper_check_value", "record_pepper", "verify_pepper"]

_CHECK_LABEL = b"onnet/pepper-check/v1"
_CHECK_SIZE = 16

_RECORD_LUA = """-- KEYS: the pepper key. ARGV: pepper id, check value.
-- Records the pepper unless one is recorded already; returns the recorded id and check,
-- and 1 when this call wrote them.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local recorded = redis.call('HMGET', KEYS[1], 'id', 'check')
  return {recorded[1], recorded[2], 0}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'check', ARGV[2])
return {ARGV[1], ARGV[2], 1}
"""
_RECORD = Script(_RECORD_LUA, "record_pepper")


def pepper_check_value(key: bytes) -> str:
    """The public check value of the pepper ``key`` (hex): equal keys, equal values."""
    return hmac.new(key, _CHECK_LABEL, hashlib.sha256).digest()[:_CHECK_SIZE].hex()


class PepperMismatch(ConfigError):
    """The registry under a prefix was built with a pepper other than the configured one."""

    def __init__(self, layout: Layout, setting: str, recorded_id: str, configured_id: str) -> None:
        """Say which setting, which two pepper ids, and the way out; never a secret."""
        super().__init__(
            f"{setting} holds pepper id {configured_id}, but the registry under prefix "
            f"{layout.prefix} (ONNET_REDIS_PREFIX) was built with pepper id {recorded_id}; "
            "with another pepper it would find nobody. Configure the pepper that built it, "
            "or rotate: serve the new pepper under a new ONNET_REDIS_PREFIX and re-import "
            '(README, "Rotating the pepper").'
        )
        self.recorded_id = recorded_id
        self.configured_id = configured_id


async def record_pepper(client: RedisClient, layout: Layout, pepper: Pepper, setting: str) -> bool:
    """Record ``pepper`` for ``layout``'s registry, or check it against the recorded one.

    Returns True when this call recorded it (the prefix's first use since pepper records
    exist). Raises PepperMismatch, having written nothing, when another pepper is recorded;
    ``setting`` names where the configured pepper came from.
    """
    check = pepper_check_value(pepper.key)
    recorded_id, recorded_check, written = await _RECORD(
        client, [layout.pepper_key()], [pepper.key_id, check]
    )
    _compare(layout, setting, pepper, recorded_id, recorded_check)
    return bool(written)


async def verify_pepper(client: RedisClient, layout: Layout, pepper: Pepper, setting: str) -> bool:
    """Check ``pepper`` against the one recorded for ``layout``, writing nothing.

    Returns False when no pepper is recorded there; raises PepperMismatch when another is.
    """
    recorded_id, recorded_check = await client.hmget(layout.pepper_key(), ["id", "check"])
    if recorded_id is None and recorded_check is None:
        return False
    _compare(layout, setting, pepper, recorded_id, recorded_check)
    return True


def _compare(
    layout: Layout,
    setting: str,
    pepper: Pepper,
    recorded_id: bytes | str | None,
    recorded_check: bytes | str | None,
) -> None:
    expected = pepper_check_value(pepper.key).encode()
    # A record without a check value cannot vouch for any pepper: refuse rather than guess.
    if recorded_check is None or not hmac.compare_digest(_bytes(recorded_check), expected):
        shown = _bytes(recorded_id).decode("ascii", "replace") if recorded_id else "unknown"
        raise PepperMismatch(layout, setting, shown, pepper.key_id)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
