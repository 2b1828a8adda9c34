"""The load test's synthetic people: registered users, and address books that find some.

Registered user ``i`` is ``loadtest-NNNNNNN`` at a fixed number in the +1 650, 415 and 510
area codes; numbers nobody registers come from 408, 669 and 831, so a book's non-matching
share can never match by accident. Every number is a valid E.164 number (libphonenumber
accepts ``+1 AAA`` followed by any seven digits from 2000000 in these area codes; the unit
tests check the ranges' ends), so the server takes the registrations and a client would
upload the same strings.

The numbering does not depend on the seed: a registry populated once serves later runs with
any seed. The seed picks which users each book holds.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import onnet

__all__ = [
    "MAX_UNREGISTERED",
    "MAX_USERS",
    "Book",
    "import_rows",
    "make_books",
    "registered_number",
    "registered_per_book",
    "unregistered_number",
    "user_id",
]

_FIRST_SUBSCRIBER = 2_000_000
"""Seven-digit subscriber numbers from here up are valid (no leading 0 or 1)."""
_PER_AREA = 10_000_000 - _FIRST_SUBSCRIBER
_REGISTERED_AREAS = ("650", "415", "510")
_UNREGISTERED_AREAS = ("408", "669", "831")

MAX_USERS = _PER_AREA * len(_REGISTERED_AREAS)
"""The most users ``--populate`` can make (24 million)."""
MAX_UNREGISTERED = _PER_AREA * len(_UNREGISTERED_AREAS)
"""How many distinct numbers outside the population there are to draw from."""


def _number(areas: tuple[str, ...], index: int) -> str:
    area, subscriber = divmod(index, _PER_AREA)
    return f"+1{areas[area]}{_FIRST_SUBSCRIBER + subscriber:07d}"


def registered_number(index: int) -> str:
    """The E.164 number of population user ``index`` (0-based, below MAX_USERS)."""
    if not 0 <= index < MAX_USERS:
        raise ValueError(f"user index {index} out of range")
    return _number(_REGISTERED_AREAS, index)


def unregistered_number(index: int) -> str:
    """Number ``index`` of the range that the population never registers."""
    if not 0 <= index < MAX_UNREGISTERED:
        raise ValueError(f"number index {index} out of range")
    return _number(_UNREGISTERED_AREAS, index)


def user_id(index: int) -> str:
    """The user id of population user ``index``."""
    return f"loadtest-{index:07d}"


def import_rows(users: int) -> Iterator[onnet.ImportRow]:
    """The rows that register the population's ``users`` users, all discoverable."""
    for index in range(users):
        yield onnet.ImportRow(user_id(index), registered_number(index), True)


@dataclass(frozen=True)
class Book:
    """One virtual client's address book, already hashed."""

    hashes: bytes
    """Distinct contact hashes, packed 32 bytes each, registered and unregistered mixed."""
    size: int
    """How many hashes."""
    registered: int
    """How many of them belong to population users (the matches to expect)."""


def registered_per_book(batch: int, match_share: float) -> int:
    """How many registered numbers a book of ``batch`` holds for ``match_share``."""
    return round(batch * match_share)


def make_books(clients: int, batch: int, match_share: float, users: int, seed: int) -> list[Book]:
    """``clients`` books of ``batch`` distinct numbers each.

    ``round(batch * match_share)`` of a book's numbers are drawn from the first ``users``
    population users, the rest from numbers nobody registered. The same arguments always
    give the same books.
    """
    registered = registered_per_book(batch, match_share)
    if registered > users:
        raise ValueError(
            f"a book needs {registered} registered numbers, but the population has {users} users"
        )
    if batch - registered > MAX_UNREGISTERED:
        raise ValueError(f"a book may hold at most {MAX_UNREGISTERED} unregistered numbers")
    books = []
    for client in range(clients):
        # One generator per client, seeded from both: a client's book does not change when
        # the number of clients does.
        rng = random.Random(f"onnet-loadtest/{seed}/{client}")  # noqa: S311 - not a secret
        numbers = [registered_number(i) for i in rng.sample(range(users), registered)]
        numbers += [
            unregistered_number(i) for i in rng.sample(range(MAX_UNREGISTERED), batch - registered)
        ]
        rng.shuffle(numbers)
        packed = b"".join(onnet.contact_hash(number) for number in numbers)
        books.append(Book(packed, batch, registered))
    return books
