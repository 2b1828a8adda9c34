"""Reading a DiscoverResponse in its wire form back into matches.

The index writes Discover's answer as protobuf bytes (core/_native.pyx, ``discover_answer``)
and the server sends them as they are; this reads them, for tools and tests that want the
matches as Python objects.
"""

from __future__ import annotations

import numpy as np

from onnet.v1 import discovery_pb2
from onnet_server.core.ports import Matches

__all__ = ["decode_matches"]


def decode_matches(answer: bytes) -> Matches:
    """The matches of a serialized DiscoverResponse."""
    message = discovery_pb2.DiscoverResponse.FromString(answer)
    return Matches(np.array(message.matched_indexes, dtype=np.uint32), list(message.user_ids))
