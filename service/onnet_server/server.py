"""The composition root: builds the store, the core and the gRPC server, and runs it."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from onnet.v1 import discovery_pb2, discovery_pb2_grpc, registry_pb2, registry_pb2_grpc
from onnet_server.config import ServerConfig
from onnet_server.core.discovery import DiscoveryLimits, DiscoveryService
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.ports import RegistryStore
from onnet_server.core.private import BlindEvaluator, BucketServer, OprfKey
from onnet_server.core.registry import RegistryService
from onnet_server.pepper import Pepper, load_pepper
from onnet_server.servicer import DiscoveryServicer, RegistryServicer
from onnet_server.status import MalformedRequestInterceptor
from onnet_server.stores.memory import MemoryRegistry
from onnet_server.stores.redis_connection import RedisClient, connect_and_run, describe
from onnet_server.stores.redis_store import RedisRegistry

__all__ = ["RunningServer", "serve", "start_server"]

_log = logging.getLogger(__name__)

SERVICE_NAMES = (
    discovery_pb2.DESCRIPTOR.services_by_name["Discovery"].full_name,
    registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name,
)


@dataclass
class RunningServer:
    """A started server and what is needed to stop it cleanly."""

    server: aio.Server
    port: int
    """The port actually bound (useful when the configuration asked for port 0)."""
    health: health.aio.HealthServicer
    grace: float
    store: RegistryStore

    async def stop(self) -> None:
        """Report NOT_SERVING, refuse new calls, let in-flight calls finish, close the store."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.grace)
        if isinstance(self.store, RedisRegistry):
            await self.store.close()


async def open_store(config: ServerConfig) -> RegistryStore:
    """The configured registry store: Redis, Redis Cluster, or the embedded memory store."""
    if not (config.redis_url or config.redis_cluster):
        return MemoryRegistry()
    _log.info("loading the registry from %s", describe(config.redis_url, config.redis_cluster))

    async def load(client: RedisClient) -> RedisRegistry:
        store = RedisRegistry(client)
        await store.start()
        return store

    return await connect_and_run(config.redis_url, config.redis_cluster, load)


async def start_server(
    config: ServerConfig, *, store: RegistryStore | None = None, pepper: Pepper | None = None
) -> RunningServer:
    """Wire the services for ``config`` and start serving on ``config.listen``."""
    pepper = pepper or load_pepper(config)
    if pepper.ephemeral:
        _log.warning(
            "no pepper configured (ONNET_PEPPER_FILE or ONNET_PEPPER): using an ephemeral "
            "pepper, id %s; fingerprints will not match after a restart. Development only.",
            pepper.key_id,
        )
    store = store if store is not None else await open_store(config)
    fingerprinter = Fingerprinter(pepper.key)
    limits = DiscoveryLimits(
        max_batch=config.max_batch,
        # A re-sync token may cover a whole address book, which can span several batches.
        max_previous=(config.max_message_bytes - 1024) // 32 - config.max_batch,
        max_message_bytes=config.max_message_bytes,
    )
    server = aio.server(
        interceptors=[MalformedRequestInterceptor()],
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            # gRPC turns SO_REUSEPORT on by default, which lets a second server silently share
            # a port that is already taken; refuse instead.
            ("grpc.so_reuseport", 0),
        ],
    )
    oprf_key = OprfKey.from_pepper(pepper.key)
    evaluator = BlindEvaluator(oprf_key, config.max_batch)
    discovery_pb2_grpc.add_DiscoveryServicer_to_server(
        DiscoveryServicer(
            DiscoveryService(store, fingerprinter, limits),
            evaluator,
            BucketServer(store, config.max_message_bytes),
        ),
        server,
    )
    registry_pb2_grpc.add_RegistryServicer_to_server(
        RegistryServicer(RegistryService(store, fingerprinter, oprf_key)), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port(config.listen)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = config.listen.rsplit(":", 1)[0]
    _log.info(
        "onnet serving on %s:%d (store: %s, pepper id %s, max batch %d)",
        host,
        port,
        type(store).__name__,
        pepper.key_id,
        config.max_batch,
    )
    return RunningServer(server, port, health_servicer, config.shutdown_grace, store)


async def serve(config: ServerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first: a signal that arrives while the store loads or the port opens must
    # still shut down cleanly rather than kill the process mid-start.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    starting = asyncio.ensure_future(start_server(config))
    await asyncio.wait(
        [starting, asyncio.ensure_future(stopping.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    if not starting.done():
        starting.cancel()
        _log.info("stopped before serving")
        return
    running = starting.result()
    serving = asyncio.ensure_future(running.server.wait_for_termination())
    await asyncio.wait(
        [serving, asyncio.ensure_future(stopping.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    _log.info("shutting down: finishing in-flight calls (up to %.1f s)", config.shutdown_grace)
    await running.stop()
    _log.info("stopped")
