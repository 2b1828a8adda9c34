"""Types of the compiled re-sync token's common case (core/_resync_native.pyx)."""

from hashlib import blake2b

class CurrentTokens:
    def __init__(self, key_id: bytes, mac_prototype: blake2b, domain: bytes, ttl: int) -> None: ...
    def issue(self, account: str, first: int, second: int, now: float) -> bytes: ...
    def renew(
        self, account: str, token: bytes, first: int, second: int, now: float
    ) -> bytes | None: ...
