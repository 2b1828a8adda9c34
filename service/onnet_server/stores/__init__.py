"""The outbound adapters: the registry and quota stores (memory, Redis, Redis Cluster).

Each answers lookups from the in-process index (index_reads.py) and keeps it current.
"""

from onnet_server.stores.memory import MemoryRegistry

__all__ = ["MemoryRegistry"]
