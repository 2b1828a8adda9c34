"""Answers written in their wire form, read back into Python objects.

The index writes Discover's and FetchBuckets' answers as protobuf bytes itself
(core/_native.pyx: ``discover_answer``, ``encode_buckets``) and the server sends them as they
are; these read them back, for tools and tests that want matches, buckets and entries.
"""

from __future__ import annotations

import numpy as np

from onnet.v1 import discovery_pb2
from onnet_server.core.ports import Matches

__all__ = ["decode_buckets", "decode_matches"]


def decode_matches(answer: bytes) -> Matches:
    """The matches of a serialized DiscoverResponse."""
    message = discovery_pb2.DiscoverResponse.FromString(answer)
    return Matches(np.array(message.matched_indexes, dtype=np.uint32), list(message.user_ids))


def decode_buckets(answer: bytes) -> dict[int, list[bytes]]:
    """The entries of each bucket of a serialized FetchBucketsResponse, in order."""
    message = discovery_pb2.FetchBucketsResponse.FromString(answer)
    return {bucket.bucket: list(bucket.entries) for bucket in message.buckets}
