"""Checks on request fields. Each failure names the field and the reason, never the value."""

from __future__ import annotations

from onnet import InvalidNumberError, normalize
from onnet.protocol import CONTACT_HASH_SIZE
from onnet_server.core.errors import InvalidArgument

__all__ = [
    "MAX_USER_ID_LENGTH",
    "check_e164",
    "check_packed",
    "check_packed_hashes",
    "check_user_id",
]

MAX_USER_ID_LENGTH = 64
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))


def check_packed(
    field: str,
    data: bytes,
    *,
    item_size: int,
    item: str,
    items: str,
    max_count: int,
    allow_empty: bool,
) -> int:
    """Return how many ``item_size``-byte items ``data`` packs, or raise InvalidArgument.

    ``item`` and ``items`` name one and several of them in the messages.
    """
    if len(data) % item_size:
        raise InvalidArgument(field, f"length {len(data)} is not a multiple of {item_size} bytes")
    count = len(data) // item_size
    if count == 0 and not allow_empty:
        raise InvalidArgument(field, f"must hold at least one {item}")
    if count > max_count:
        raise InvalidArgument(field, f"batch of {count} {items} exceeds the limit of {max_count}")
    return count


def check_packed_hashes(field: str, data: bytes, *, max_count: int, allow_empty: bool) -> int:
    """Return how many 32-byte contact hashes ``data`` packs, or raise InvalidArgument."""
    return check_packed(
        field,
        data,
        item_size=CONTACT_HASH_SIZE,
        item="32-byte contact hash",
        items="hashes",
        max_count=max_count,
        allow_empty=allow_empty,
    )


def check_user_id(user_id: str, field: str = "user_id") -> None:
    """A user id is 1 to 64 characters of printable ASCII."""
    if not user_id:
        raise InvalidArgument(field, "must not be empty")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InvalidArgument(field, f"longer than {MAX_USER_ID_LENGTH} characters")
    if not _PRINTABLE_ASCII.issuperset(user_id):
        raise InvalidArgument(field, "must be printable ASCII (0x20 to 0x7E)")


def check_e164(e164: str, field: str = "e164") -> None:
    """A registered number must be a valid number already written in E.164 form."""
    if not e164:
        raise InvalidArgument(field, "must not be empty")
    try:
        canonical = normalize(e164)
    except InvalidNumberError as exc:
        raise InvalidArgument(field, f"not a valid phone number: {exc.reason}") from None
    if canonical != e164:
        raise InvalidArgument(field, "not in E.164 form ('+', country code, number, no spaces)")
