"""Answers already in their wire form, which the transport sends as they are.

FetchBuckets answers with tens of thousands of entries: making a Python object of each (to
build a protobuf message, which then copies them all again) cost more than the whole rest
of the call. The index writes the answer's protobuf bytes itself (core/_native.pyx,
``encode_buckets``) and the handler returns them as ``Encoded``; every method's response
serializer lets ``Encoded`` through untouched (the gate wraps it with ``passing_encoded``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Encoded", "passing_encoded"]


class Encoded:
    """A response message already serialized (protobuf wire format).

    A holder, not a ``bytes`` subclass: gRPC sends only exact ``bytes``, and these go out
    as the very object the index made, with no copy.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        """Hold ``data``, one serialized message."""
        self.data = data


def passing_encoded(
    serialize: Callable[[Any], bytes] | None,
) -> Callable[[Any], bytes] | None:
    """``serialize``, except that an ``Encoded`` answer goes out as it is."""
    if serialize is None:
        return None
    inner = serialize

    def serialize_or_pass(message: Any) -> bytes:  # noqa: ANN401 - any method's message
        return message.data if type(message) is Encoded else inner(message)

    return serialize_or_pass
