"""The composition root: builds the store, the core and the gRPC server, and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from onnet.protocol import CONTACT_HASH_SIZE, ELEMENT_SIZE, KIND_ACCOUNT, KIND_SERVICE
from onnet.v1 import (
    bench_pb2,
    bench_pb2_grpc,
    discovery_pb2,
    discovery_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from onnet_server.api.auth import Authenticator
from onnet_server.api.credentials import CredentialPolicy, CredentialVerifier
from onnet_server.api.gate import PUBLIC, CallGate, CallSlots, method_rules
from onnet_server.api.jwks import JwksError, KeySet
from onnet_server.api.metrics import Metrics, MetricsInterceptor, serve_metrics
from onnet_server.api.servicer import (
    BenchServicer,
    DiscoveryServicer,
    HealthServicer,
    RegistryServicer,
)
from onnet_server.api.tls import server_credentials
from onnet_server.config import ConfigError, ServeSettings
from onnet_server.core.accounts import Accounts
from onnet_server.core.call_rate import CallRatePolicy, CallRates
from onnet_server.core.discovery import DiscoveryLimits, DiscoveryService
from onnet_server.core.fingerprint import Fingerprinter
from onnet_server.core.ports import RegistryStore
from onnet_server.core.private.buckets import BucketServer
from onnet_server.core.private.keys import BlindEvaluator, OprfKey
from onnet_server.core.private.service import PrivateDiscovery
from onnet_server.core.quota import QuotaPolicy
from onnet_server.core.registry import RegistryService
from onnet_server.core.resync import ResyncTokens
from onnet_server.core.routing import RoutingService
from onnet_server.core.row_preparer import RowPreparer
from onnet_server.heap import keep_out_of_collections
from onnet_server.pepper import Pepper, load_pepper, load_previous_pepper
from onnet_server.stores.index_loader import ChildLoader
from onnet_server.stores.index_rebuild import BasePolicy
from onnet_server.stores.lookup_thread import LookupThread
from onnet_server.stores.memory import MemoryRegistry
from onnet_server.stores.redis_connection import RedisClient, connect_and_run, describe
from onnet_server.stores.redis_layout import Layout
from onnet_server.stores.redis_pepper import PepperMismatch, record_pepper
from onnet_server.stores.redis_store import RedisRegistry
from onnet_server.tracing import tracing_from_env
from onnet_server.work_pool import WorkPool

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["RunningServer", "serve", "start_server"]

_log = logging.getLogger(__name__)

DISCOVERY = discovery_pb2.DESCRIPTOR.services_by_name["Discovery"]
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
BENCH = bench_pb2.DESCRIPTOR.services_by_name["Bench"]
SERVICE_NAMES = (DISCOVERY.full_name, REGISTRY.full_name)

CREDENTIALS = {
    "discovery": (DISCOVERY, KIND_ACCOUNT),
    "registry": (REGISTRY, KIND_SERVICE),
    # The load tests' ceiling takes what Discover takes, so that both pay the same checks.
    "bench": (BENCH, KIND_ACCOUNT),
    "health": (health_pb2.DESCRIPTOR.services_by_name["Health"], PUBLIC),
    "reflection": (reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"], PUBLIC),
}
"""The credential every service needs; the gate refuses any method not listed here."""

# HTTP/2 streams one connection may have open at once (RFC 9113 asks for at least 100).
_STREAMS_PER_CONNECTION = 100
# Tags and lengths around a message's fields, beyond the bytes of the fields themselves.
_FRAMING = 64
_SMALL_REQUEST = 4096
_E164_ON_WIRE = 18  # "+" and up to 15 digits, plus a tag and a length byte
_IMPORT_ROW = 112  # a RegisterRequest of the longest id and a number, with its framing


Adder = Callable[[Any, aio.Server], None]
"""A generated ``add_XServicer_to_server``."""


@dataclass
class Transport:
    """Builds this process's gRPC servers: the same interceptors and servicers each time.

    One server is built at start; another on the same port if gRPC's accept loop dies
    (``RunningServer.replace_transport``), reusing everything but gRPC's own objects.
    """

    config: ServeSettings
    interceptors: list[aio.ServerInterceptor]
    servicers: list[tuple[Adder, Any]]
    health: HealthServicer
    names: list[str]

    def bind(self, address: str) -> tuple[aio.Server, int]:
        """A new server with every service, bound to ``address`` (not started)."""
        config = self.config
        server = aio.server(
            # The metrics interceptor is outermost, so it times and counts every call, even
            # one the gate refuses or whose bytes do not parse.
            interceptors=self.interceptors,
            # More calls at once are refused at once (RESOURCE_EXHAUSTED): with the largest
            # request, this bounds what request messages can hold (README, "Memory budget").
            maximum_concurrent_rpcs=config.max_concurrent_calls,
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.max_concurrent_streams", _STREAMS_PER_CONNECTION),
                # gRPC turns SO_REUSEPORT on by default, which lets a second server silently
                # share a port that is already taken; refuse instead, unless this is one of
                # the workers of `onnet serve --workers N`, which share it on purpose.
                ("grpc.so_reuseport", int(config.reuse_port)),
                # A connection is asked to reconnect after this age and closed, its calls
                # with it, after the grace: an answer a client never reads (its flow-control
                # window shut) otherwise keeps its call, and its slot, forever.
                ("grpc.max_connection_age_ms", int(config.max_connection_age * 1000)),
                ("grpc.max_connection_age_grace_ms", int(config.receive_timeout * 1000)),
            ],
        )
        for add, servicer in self.servicers:
            add(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                *self.names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        if config.tls_cert is not None and config.tls_key is not None:
            credentials = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        return server, port


@dataclass
class RunningServer:
    """A started server and what is needed to stop it cleanly."""

    server: aio.Server
    port: int
    """The port actually bound (useful when the configuration asked for port 0)."""
    health: health.aio.HealthServicer
    grace: float
    store: RegistryStore
    stop_metrics: Callable[[], None] | None = None
    """Stops the metrics endpoint, when one is served."""
    following: asyncio.Future[None] | None = None
    """Refreshes the metrics' gauges from the store."""
    pool: WorkPool | None = None
    """The threads of heavy work."""
    transport: Transport | None = None
    """Builds a replacement server, should gRPC's accept loop die."""
    preparer: RowPreparer | None = None
    """The processes that prepare import rows (started by the first large import)."""
    refreshing_keys: asyncio.Future[None] | None = None
    """Fetches the issuer's JWKS again now and then (ONNET_AUTH_JWKS_URL)."""
    lookup_thread: LookupThread | None = None
    """Runs Discover's probes off the event loop (ONNET_LOOKUP_THREAD)."""

    async def replace_transport(self, attempts: int = 100) -> None:
        """Serve the same port from a new gRPC server; end the old one's calls.

        gRPC's accept loop can die on a request it cannot decode (its bug, not onnet's); the
        old server then waits forever for that request's call. The process keeps its index,
        its store and its limits: only gRPC's objects are made again.
        """
        if self.transport is None:
            raise RuntimeError("this server cannot be rebuilt")
        host = self.transport.config.listen.rsplit(":", 1)[0]
        cancelling = asyncio.ensure_future(self.server.stop(0))  # the port is let go
        for attempt in range(attempts):
            try:
                server, _ = self.transport.bind(f"{host}:{self.port}")
                break
            except (OSError, RuntimeError):  # the old listener is not closed yet
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.02)
        await server.start()
        self.server = server
        await asyncio.wait([cancelling], timeout=max(self.grace, 1.0))

    async def stop(self) -> None:
        """Report NOT_SERVING, refuse new calls, let in-flight calls finish, close the store."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.grace)
        if self.pool is not None:
            self.pool.close()
        if self.preparer is not None:
            await asyncio.to_thread(self.preparer.close)
        if self.following is not None:
            self.following.cancel()
        if self.refreshing_keys is not None:
            self.refreshing_keys.cancel()
        if self.stop_metrics is not None:
            self.stop_metrics()
        if self.lookup_thread is not None:
            await _stop_lookup_thread(self.store, self.lookup_thread)
        await self.store.close()


async def open_store(config: ServeSettings, pepper: Pepper) -> RegistryStore:
    """The configured registry store: Redis, Redis Cluster, or the embedded memory store.

    A Redis registry must have been built with ``pepper``: the first server on a prefix
    records it, and a server with another one raises PepperMismatch (a ConfigError) before
    it loads or writes anything.
    """
    if not (config.redis_url or config.redis_cluster):
        return MemoryRegistry(base_policy(config))
    _log.info("loading the registry from %s", describe(config.redis_url, config.redis_cluster))
    layout = Layout(config.redis_prefix)
    setting = "ONNET_PEPPER_FILE" if config.pepper_file is not None else "ONNET_PEPPER"

    async def load(client: RedisClient) -> RedisRegistry:
        try:
            first_use = await record_pepper(client, layout, pepper, setting)
        except PepperMismatch:
            await client.aclose()  # not retried: another try would meet the same pepper
            raise
        store = RedisRegistry(
            client,
            layout=layout,
            index_dir=config.index_dir,
            base_policy=base_policy(config),
            loader=ChildLoader(config.redis_url, config.redis_cluster, layout.prefix),
        )
        await store.start()  # on failure it lets go of what it took; the client is closed
        if first_use and len(store):
            # A registry older than pepper records: nothing can prove which pepper built it.
            _log.warning(
                "recorded pepper id %s for the existing registry under prefix %s; from now "
                "on it starts with this pepper only",
                pepper.key_id,
                layout.prefix,
            )
        return store

    return await connect_and_run(config.redis_url, config.redis_cluster, load)


def base_policy(config: ServeSettings) -> BasePolicy:
    """When the index gets a new base."""
    return BasePolicy(min_changes=config.index_rebuild_changes, max_age=config.index_max_age)


def resync_tokens(config: ServeSettings, pepper: Pepper) -> ResyncTokens:
    """Re-sync tokens under the pepper, still accepting those of the previous pepper."""
    previous = load_previous_pepper(config)
    return ResyncTokens.from_peppers(
        pepper.key,
        *([previous.key] if previous is not None else []),
        ttl_seconds=config.resync_token_ttl,
    )


def request_limits(config: ServeSettings, max_buckets: int) -> dict[str, int]:
    """The largest request each method can legitimately need, in bytes.

    Methods not named here take small messages (_SMALL_REQUEST). The transport's own limit
    is ``config.max_message_bytes``, the largest of these.
    """
    discovery, registry, bench = (
        f"/{service.full_name}/" for service in (DISCOVERY, REGISTRY, BENCH)
    )
    return {
        # A re-sync also carries the hashes its token covers, which may span several batches.
        discovery + "Discover": config.max_message_bytes,
        bench + "Ceiling": config.max_message_bytes,
        discovery + "BlindEvaluate": config.max_batch * ELEMENT_SIZE + _FRAMING,
        # Bucket numbers are packed varints of at most 5 bytes.
        discovery + "FetchBuckets": max_buckets * 5 + _FRAMING,
        registry + "Lookup": config.max_batch * max(CONTACT_HASH_SIZE, _E164_ON_WIRE) + _FRAMING,
        # A row: a user id of up to 64 characters, a number, the flag, and their framing.
        registry + "ImportUsers": config.max_batch * _IMPORT_ROW + _FRAMING,
    }


def call_gate(
    config: ServeSettings, auth: Authenticator, accounts: Accounts, max_buckets: int
) -> CallGate:
    """The gate every call passes, with a rule for each method of each served service."""
    rules = method_rules(CREDENTIALS, request_limits(config, max_buckets), _SMALL_REQUEST)
    rates = CallRates(
        CallRatePolicy(
            config.account_calls, config.account_calls_period, config.account_concurrent_calls
        )
    )
    return CallGate(
        rules,
        auth,
        CallSlots.shares_of(config.max_concurrent_calls, rates),
        require_account=accounts.admit,
        refresh_accounts=accounts.refreshed,
        receive_timeout=config.receive_timeout,
    )


_JWKS_SETTINGS = {
    "file": "ONNET_AUTH_JWKS",
    "url": "ONNET_AUTH_JWKS_URL",
    "": "ONNET_AUTH_ALGORITHMS",
}
"""The setting a KeySet's error is about, by its ``source``."""


async def authenticator(config: ServeSettings) -> Authenticator:
    """The credential check that ``config`` asks for, its JWKS URL fetched once.

    The fetch runs off the event loop: it may take its whole deadline.
    """
    verifier = None
    if config.auth_jwks is not None or config.auth_jwks_url is not None:
        try:
            keys = KeySet(
                config.auth_algorithms,
                file=config.auth_jwks,
                url=config.auth_jwks_url,
                refresh_seconds=config.auth_jwks_refresh,
            )
            await asyncio.to_thread(keys.fetch_now)
        except JwksError as error:
            raise ConfigError(f"{_JWKS_SETTINGS[error.source]}: {error}") from None
        policy = CredentialPolicy(
            issuer=config.auth_issuer,
            audience=config.auth_audience,
            kind_claim=config.auth_kind_claim,
            max_lifetime=config.max_credential_lifetime,
        )
        verifier = CredentialVerifier(keys, policy)
    return Authenticator(
        verifier, dev_mode=config.dev_mode, service_names=config.service_cert_names
    )


async def start_server(
    config: ServeSettings,
    *,
    store: RegistryStore | None = None,
    pepper: Pepper | None = None,
    tracer_provider: TracerProvider | None = None,
) -> RunningServer:
    """Wire the services for ``config`` and start serving on ``config.listen``.

    With ``tracer_provider``, every call of onnet's services is traced (server_spans.py).
    Should a step fail after others have started, what they started is stopped again (the
    store too, when this function opened it); once serving, the RunningServer owns it all.
    """
    pepper = pepper or load_pepper(config)
    _warn_about_settings(config, pepper)
    async with contextlib.AsyncExitStack() as started:
        running = await _start(config, started, store, pepper, tracer_provider)
        started.pop_all()
        return running


def _lookup_thread(started: contextlib.AsyncExitStack, store: RegistryStore) -> LookupThread:
    """A thread for ``store``'s Discover probes, stopped should the start fail."""
    thread = LookupThread()
    thread.start()
    store.lookup_thread = thread
    started.push_async_callback(_stop_lookup_thread, store, thread)
    return thread


async def _stop_lookup_thread(store: RegistryStore, thread: LookupThread) -> None:
    """Probe in line again (a store may outlive its server), then stop ``thread``."""
    store.lookup_thread = None
    await thread.close()


def _in_background(
    started: contextlib.AsyncExitStack, work: Coroutine[Any, Any, None]
) -> asyncio.Task[None]:
    """``work`` as a task, cancelled should the start fail."""
    task = asyncio.ensure_future(work)
    started.callback(task.cancel)
    return task


async def _start(
    config: ServeSettings,
    started: contextlib.AsyncExitStack,
    store: RegistryStore | None,
    pepper: Pepper,
    tracer_provider: TracerProvider | None,
) -> RunningServer:
    """``start_server``'s steps; each thing started is entered on ``started``."""
    auth = await authenticator(config)
    if store is None:
        store = await open_store(config, pepper)
        started.push_async_callback(store.close)
    lookup_thread = _lookup_thread(started, store) if config.lookup_thread else None
    metrics = Metrics()
    following = _in_background(started, metrics.follow(store))
    refreshing_keys = _in_background(started, auth.keep_keys_current())
    quota = store.quota_store(QuotaPolicy(config.quota_new_numbers, config.quota_period))
    fingerprinter = Fingerprinter(pepper.key)
    limits = DiscoveryLimits.for_messages(config.max_batch, config.max_message_bytes)
    oprf_key = OprfKey.from_pepper(pepper.key)
    buckets = BucketServer(store, config.max_message_bytes)
    accounts = Accounts(store, open_accounts=config.dev_mode)
    gate = call_gate(config, auth, accounts, buckets.max_buckets)
    pool = WorkPool()
    started.callback(pool.close)
    preparer = RowPreparer(pepper.key, config.import_processes)
    started.push_async_callback(asyncio.to_thread, preparer.close)
    private = PrivateDiscovery(
        BlindEvaluator(oprf_key, config.max_batch), buckets, quota, accounts, pool
    )
    discovery = DiscoveryService(
        store,
        limits,
        quota,
        tokens=resync_tokens(config, pepper),
        accounts=accounts,
    )
    servicers: list[tuple[Adder, Any]] = [
        (
            discovery_pb2_grpc.add_DiscoveryServicer_to_server,
            DiscoveryServicer(discovery, private, metrics),
        ),
        (
            registry_pb2_grpc.add_RegistryServicer_to_server,
            RegistryServicer(
                RegistryService(
                    store,
                    fingerprinter,
                    oprf_key,
                    max_batch=config.max_batch,
                    preparer=preparer,
                ),
                RoutingService(store, fingerprinter, config.max_batch),
                metrics,
            ),
        ),
    ]
    names = list(SERVICE_NAMES)
    if config.bench_ceiling:
        servicers.append((bench_pb2_grpc.add_BenchServicer_to_server, BenchServicer()))
        names.append(BENCH.full_name)
        _log.warning("benchmark ceiling onnet.v1.Bench/Ceiling is served (--bench-ceiling)")
    health_servicer = HealthServicer()
    interceptors: list[aio.ServerInterceptor] = [MetricsInterceptor(metrics)]
    if tracer_provider is not None:
        from onnet_server.api.server_spans import ServerSpans  # noqa: PLC0415 - needs onnet[otel]

        interceptors.append(ServerSpans(tracer_provider, (DISCOVERY, REGISTRY, BENCH)))
    transport = Transport(config, [*interceptors, gate], servicers, health_servicer, names)
    server, port = transport.bind(config.listen)
    await server.start()
    started.push_async_callback(server.stop, None)
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = config.listen.rsplit(":", 1)[0]
    _log.info(
        "onnet serving on %s:%d (pid %d; %s; store: %s, pepper id %s, max batch %d, quota %d "
        "new numbers per %.0f s)",
        host,
        port,
        os.getpid(),
        _transport(config),
        type(store).__name__,
        pepper.key_id,
        config.max_batch,
        config.quota_new_numbers,
        config.quota_period,
        extra={
            "event": "serving",
            "host": host,
            "port": port,
            "pid": os.getpid(),
            "transport": _transport(config),
            "store": type(store).__name__,
            "pepper_id": pepper.key_id,
        },
    )
    stop_metrics = None
    if config.metrics_listen is not None:
        stop_metrics = serve_metrics(metrics, config.metrics_listen)
        _log.info("metrics served at http://%s/metrics", config.metrics_listen)
    return RunningServer(
        server,
        port,
        health_servicer,
        config.shutdown_grace,
        store,
        stop_metrics,
        following,
        pool,
        transport,
        preparer,
        refreshing_keys=refreshing_keys,
        lookup_thread=lookup_thread,
    )


def _warn_about_settings(config: ServeSettings, pepper: Pepper) -> None:
    """Say loudly, once at start, what makes this server unfit for production."""
    if pepper.ephemeral:
        _log.warning(
            "no pepper configured (ONNET_PEPPER_FILE or ONNET_PEPPER): using an ephemeral "
            "pepper, id %s; fingerprints will not match after a restart. Development only.",
            pepper.key_id,
        )
    if config.allow_plaintext and config.tls_cert is None:
        _log.warning(
            "serving plaintext on %s (ONNET_ALLOW_PLAINTEXT): credentials and contact hashes "
            "cross the network unencrypted unless a mesh or proxy in front terminates TLS",
            config.listen,
        )
    if config.auth_jwks is not None and _writable_by_others(config.auth_jwks):
        _log.warning(
            "%s (ONNET_AUTH_JWKS) is writable by other users: whoever can write it can mint "
            "credentials; make it writable by its owner only",
            config.auth_jwks,
        )
    if config.auth_jwks_url is not None and config.auth_jwks_url.startswith("http://"):
        _log.warning(
            "the JWKS URL is plain http: whoever sits between this server and the issuer can "
            "swap the keys that credentials are checked with; use https outside a trusted network"
        )
    if config.dev_mode:
        _log.warning(
            "DEVELOPMENT MODE: calls without a credential are accepted (as the caller 'dev')%s. "
            "Not for production: set ONNET_AUTH_JWKS (or ONNET_AUTH_JWKS_URL) and drop --dev.",
            "" if config.tls_cert else ", over plaintext",
        )


def _writable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH))
    except OSError:  # a missing file is reported when it is read
        return False


def _transport(config: ServeSettings) -> str:
    if config.tls_client_ca is not None:
        return "mutual TLS"
    return "TLS" if config.tls_cert is not None else "plaintext"


async def serve(config: ServeSettings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    tracing = tracing_from_env(os.environ)  # first: a server that cannot trace does not start
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first: a signal that arrives while the store loads or the port opens must
    # still shut down cleanly rather than kill the process mid-start.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    starting = asyncio.ensure_future(start_server(config, tracer_provider=tracing.provider))
    await asyncio.wait(
        [starting, asyncio.ensure_future(stopping.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    if not starting.done():
        starting.cancel()
        await asyncio.to_thread(tracing.shutdown)
        _log.info("stopped before serving")
        return
    running = starting.result()
    if tracing.provider is not None:
        _log.info("tracing calls: spans exported to %s", " and ".join(tracing.exporters))
    keep_out_of_collections()
    memory: asyncio.Future[str] = (
        asyncio.ensure_future(_until_over(config.memory_limit << 20))
        if config.memory_limit
        else asyncio.get_running_loop().create_future()
    )
    asked: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
    while True:
        accepting: asyncio.Future[Any] = asyncio.ensure_future(_until_not_accepting(running.server))
        await asyncio.wait([accepting, memory, asked], return_when=asyncio.FIRST_COMPLETED)
        accepting.cancel()
        if stopping.is_set():
            break
        if memory.done():
            # Memory that onnet cannot bound (gRPC's C core keeps some, README "Memory
            # budget") passed the limit: exit at once, non-zero, for the supervisor to start
            # the process again; callers retry on the host's other processes meanwhile.
            _log.critical("%s; exiting so that the service is restarted", memory.result())
            logging.shutdown()
            os._exit(EXIT_CRASHED)
        # gRPC stopped accepting calls on its own: its accept loop died on a request it
        # could not decode. Serve the port again from a new gRPC server.
        _log.error("gRPC stopped accepting calls (a request it could not decode); serving again")
        await running.replace_transport()
    memory.cancel()
    _log.info("shutting down: finishing in-flight calls (up to %.1f s)", config.shutdown_grace)
    await running.stop()
    await asyncio.to_thread(tracing.shutdown)  # the spans of the last calls, exported
    _log.info("stopped")


EXIT_CRASHED = 70
"""Exit code of a server past ONNET_MEMORY_LIMIT (EX_SOFTWARE): restart it."""


async def _until_not_accepting(server: aio.Server, every: float = 0.2) -> str:
    """Return when ``server`` no longer accepts calls (stopped, or its accept loop died)."""
    # The Python server object does not say; its Cython core does (is_running: the accept
    # loop's status). Without that attribute, fall back to waiting for termination.
    core = getattr(server, "_server", None)
    if core is None or not hasattr(core, "is_running"):
        await server.wait_for_termination()
    else:
        while core.is_running():
            await asyncio.sleep(every)
    return "gRPC stopped accepting calls"


async def _until_over(limit: int, every: float = 0.5) -> str:
    """Return when the process's anonymous memory passes ``limit`` bytes."""
    while (used := _anonymous_memory()) <= limit:
        await asyncio.sleep(every)
    return f"anonymous memory {used >> 20} MiB is over ONNET_MEMORY_LIMIT ({limit >> 20} MiB)"


def _anonymous_memory() -> int:
    """Resident anonymous memory of this process (not its mapped files), in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) << 10
    return 0
