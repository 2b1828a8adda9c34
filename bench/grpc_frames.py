"""gRPC's length-prefixed message framing, for load generators that send raw HTTP/2 bodies.

A gRPC message on the wire (the body of a request or of a response, before the trailers) is
a 5-byte prefix, a compressed flag (0: not compressed) and the message's length as 4
big-endian bytes, followed by the serialized protobuf message. A unary request's body is
exactly one such frame, so a load generator that knows nothing of gRPC (h2load) can send a
file holding it as the POST body of every request.
"""

from __future__ import annotations

__all__ = ["PREFIX_SIZE", "frame", "unframe"]

PREFIX_SIZE = 5
"""Bytes before the message: the compressed flag (1) and the length (4, big-endian)."""

_MAX_LENGTH = 2**32 - 1


def frame(message: bytes) -> bytes:
    """``message`` (serialized protobuf) as one uncompressed gRPC frame."""
    if len(message) > _MAX_LENGTH:
        raise ValueError("a gRPC message is at most 4 GiB")
    return b"\x00" + len(message).to_bytes(4, "big") + message


def unframe(body: bytes) -> bytes:
    """The message of a body holding exactly one uncompressed gRPC frame.

    Raises ValueError when ``body`` is anything else (compressed, truncated, or followed by
    more bytes).
    """
    if len(body) < PREFIX_SIZE:
        raise ValueError("a gRPC frame has a 5-byte prefix")
    if body[0] != 0:
        raise ValueError("the frame is compressed (or its flag byte is not 0 or 1)")
    length = int.from_bytes(body[1:PREFIX_SIZE], "big")
    if len(body) != PREFIX_SIZE + length:
        raise ValueError(
            f"the prefix announces {length} bytes, the body holds {len(body) - PREFIX_SIZE}"
        )
    return body[PREFIX_SIZE:]
