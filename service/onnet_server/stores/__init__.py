"""Adapters of the RegistryStore port: the embedded in-memory store (Redis comes later)."""

from onnet_server.stores.memory import MemoryRegistry

__all__ = ["MemoryRegistry"]
