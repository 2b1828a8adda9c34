"""Reading a FetchBucketsResponse in its wire form back into Python objects.

The index writes FetchBuckets' answer as protobuf bytes (core/_native.pyx) and the server
sends them as they are; this reads them, for tools and tests that want buckets and entries.
"""

from __future__ import annotations

from onnet.v1 import discovery_pb2

__all__ = ["decode_buckets"]


def decode_buckets(answer: bytes) -> dict[int, list[bytes]]:
    """The entries of each bucket of a serialized FetchBucketsResponse, in order."""
    message = discovery_pb2.FetchBucketsResponse.FromString(answer)
    return {bucket.bucket: list(bucket.entries) for bucket in message.buckets}
