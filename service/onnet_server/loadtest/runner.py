"""Drive a server with virtual clients on grpc.aio, in one event loop, and record every call.

A run is: a preflight (GetConfig: is the server there, does the credential pass, do the
batches fit; a Ceiling call when asked), then with ``ceiling`` the Bench/Ceiling phase, then
the virtual clients' first syncs (each pays its book's new numbers once; never measured),
then the Discover phase. Each phase has a warm-up and a measured window.

Virtual clients behave as the SDK does: after its first sync a client sends its unchanged
book with the last answer's re-sync token, in the difference form (nothing added, nothing
removed), which costs no quota and weighs one book. ``resync=False`` sends plain calls
instead, each paying its whole book.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc import aio

from onnet.protocol import CONTACT_HASH_SIZE, CONTACT_HASH_VERSION, MESSAGE_OVERHEAD_BYTES
from onnet.v1 import bench_pb2_grpc, discovery_pb2, discovery_pb2_grpc
from onnet_server.loadtest.live import LiveLine
from onnet_server.loadtest.loops import closed_loop, open_loop
from onnet_server.loadtest.population import Book
from onnet_server.loadtest.schedule import Timetable
from onnet_server.loadtest.server_cpu import CpuReadError, ServerCpu
from onnet_server.loadtest.settings import Settings, Target
from onnet_server.loadtest.stats import PhaseStats, Samples, summarize

__all__ = [
    "CEILING_ORDER",
    "LoadTestError",
    "PhaseResult",
    "RunResult",
    "TargetRefused",
    "TargetUnreachable",
    "TargetUnsuitable",
    "VirtualClient",
    "run",
]

CEILING_ORDER = "before Discover, on the same connections, with the same settings"
"""When the ceiling is measured, as the report says it."""

_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_HARNESS_BOUND = 0.9  # cores: above it, the harness may be what limits the rate
_BEHIND = 0.9  # an open loop that achieved less than this share of its rate fell behind

Method = Callable[..., Awaitable[discovery_pb2.DiscoverResponse]]


class LoadTestError(Exception):
    """The run cannot go ahead; ``exit_code`` is what the command exits with."""

    exit_code = 2


class TargetUnreachable(LoadTestError):
    """No answer from the target at all."""

    exit_code = 3


class TargetRefused(LoadTestError):
    """The target answers but refuses the harness (a bad or missing credential)."""

    exit_code = 1


class TargetUnsuitable(LoadTestError):
    """The target cannot take these settings (batch too large, no ceiling served)."""

    exit_code = 2


class VirtualClient:
    """One simulated app: an address book, and the re-sync token of its last answer."""

    def __init__(self, book: Book, *, resync: bool) -> None:
        """Sync ``book``; with ``resync``, every call after the first carries the token."""
        self.book = book
        self.resync = resync
        self.token = b""
        self._plain = discovery_pb2.DiscoverRequest(hashes=book.hashes)
        self._with_token = self._plain

    def request(self) -> discovery_pb2.DiscoverRequest:
        """The next call's request (built again only when the token changed)."""
        if not (self.resync and self.token):
            return self._plain
        if self._with_token.token != self.token:
            self._with_token = discovery_pb2.DiscoverRequest(
                hashes=self.book.hashes, token=self.token
            )
        return self._with_token

    def answered(self, response: discovery_pb2.DiscoverResponse) -> None:
        """Keep the answer's token for the next call."""
        if self.resync and response.token:
            self.token = response.token


@dataclass(frozen=True)
class PhaseResult:
    """One phase: its figures, and the calls they came from (for the plot)."""

    stats: PhaseStats
    samples: Samples


@dataclass
class RunResult:
    """Everything a run measured."""

    max_batch: int
    """The server's largest batch (GetConfig)."""
    quota_before: int | None
    """New numbers the account could still look up before the run (GetConfig)."""
    first_syncs: dict[str, int]
    """The first syncs by status code name (re-sync mode; empty otherwise)."""
    discover: PhaseResult
    ceiling: PhaseResult | None = None
    warnings: list[str] = field(default_factory=list)
    """Anything that makes a figure less than it seems."""

    @property
    def ceiling_fraction(self) -> float | None:
        """Discover's successful calls per second over the ceiling's."""
        if self.ceiling is None or self.ceiling.stats.requests_per_second <= 0:
            return None
        return self.discover.stats.requests_per_second / self.ceiling.stats.requests_per_second


async def run(
    target: Target,
    settings: Settings,
    books: Sequence[Book],
    *,
    server_cpu: ServerCpu | None = None,
    live: LiveLine | None = None,
) -> RunResult:
    """Run the load test of ``settings`` against ``target``; one book per virtual client.

    Raises LoadTestError (a subclass) when the run cannot start.
    """
    settings.check()
    if len(books) != settings.concurrency:
        raise ValueError("give one book per virtual client (settings.concurrency)")
    options = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
    channels = [
        aio.secure_channel(target.address, target.credentials, options=options)
        if target.credentials is not None
        else aio.insecure_channel(target.address, options=options)
        for _ in range(settings.connections)
    ]
    try:
        driver = _Driver(target, settings, channels, server_cpu or ServerCpu([]), live)
        return await driver.run(books)
    finally:
        for channel in channels:
            await channel.close()


class _Driver:
    def __init__(
        self,
        target: Target,
        settings: Settings,
        channels: list[aio.Channel],
        server_cpu: ServerCpu,
        live: LiveLine | None,
    ) -> None:
        self._target = target
        self._settings = settings
        self._channels = channels
        self._metadata = target.metadata()
        self._cpu = server_cpu
        self._live = live or LiveLine(None)
        self._discover: list[Method] = [
            discovery_pb2_grpc.DiscoveryStub(channel).Discover for channel in channels
        ]
        self._ceiling: list[Method] = [
            bench_pb2_grpc.BenchStub(channel).Ceiling for channel in channels
        ]
        self._warnings: list[str] = []

    async def run(self, books: Sequence[Book]) -> RunResult:
        settings = self._settings
        max_batch, quota = await self._preflight()
        ceiling = None
        if settings.ceiling:
            clients = [VirtualClient(book, resync=settings.resync) for book in books]
            ceiling = await self._phase("Ceiling", self._ceiling, clients)
        clients = [VirtualClient(book, resync=settings.resync) for book in books]
        first_syncs: dict[str, int] = {}
        if settings.resync:
            first_syncs = await self._first_syncs(clients)
        discover = await self._phase("Discover", self._discover, clients)
        self._check_harness(discover.stats, ceiling.stats if ceiling else None)
        return RunResult(max_batch, quota, first_syncs, discover, ceiling, self._warnings)

    async def _preflight(self) -> tuple[int, int | None]:
        """Reach the server, check the credential and the settings against its limits."""
        settings = self._settings
        stub = discovery_pb2_grpc.DiscoveryStub(self._channels[0])
        try:
            config = await stub.GetConfig(
                discovery_pb2.GetConfigRequest(),
                timeout=settings.timeout,
                metadata=self._metadata,
            )
        except aio.AioRpcError as error:
            raise _preflight_error(self._target.address, error) from None
        for channel in self._channels[1:]:
            try:
                await asyncio.wait_for(channel.channel_ready(), settings.timeout)
            except TimeoutError:
                raise TargetUnreachable(
                    f"cannot open {settings.connections} connections to {self._target.address}"
                ) from None
        if config.contact_hash_version != CONTACT_HASH_VERSION:
            raise TargetUnsuitable(
                f"the server expects contact-hash version {config.contact_hash_version}"
            )
        if settings.batch > config.max_batch:
            raise TargetUnsuitable(
                f"--batch {settings.batch} is above the server's limit of {config.max_batch} "
                "hashes per Discover (ONNET_MAX_BATCH)"
            )
        if settings.batch * CONTACT_HASH_SIZE + MESSAGE_OVERHEAD_BYTES > config.max_message_bytes:
            raise TargetUnsuitable(
                f"a call of {settings.batch} hashes does not fit the server's message limit "
                f"of {config.max_message_bytes} bytes: lower --batch"
            )
        quota = config.quota_remaining if config.HasField("quota_remaining") else None
        self._check_quota(quota)
        if settings.ceiling:
            await self._check_ceiling()
        return config.max_batch, quota

    def _check_quota(self, quota: int | None) -> None:
        settings = self._settings
        if quota is None:
            return
        if settings.resync and quota < settings.concurrency * settings.batch:
            self._warnings.append(
                f"the account has {quota:,} new numbers of quota left and the first syncs need "
                f"{settings.concurrency * settings.batch:,} (--concurrency x --batch): some will "
                "be refused (RESOURCE_EXHAUSTED); start the server with a larger "
                "ONNET_QUOTA_NEW_NUMBERS, or use another account"
            )
        if not settings.resync:
            self._warnings.append(
                f"--no-resync: every call pays {settings.batch:,} new numbers and the account "
                f"has {quota:,} left, so about {quota // settings.batch:,} calls can succeed; "
                "the rest are refused (RESOURCE_EXHAUSTED)"
            )

    async def _check_ceiling(self) -> None:
        probe = discovery_pb2.DiscoverRequest(hashes=bytes(CONTACT_HASH_SIZE))
        try:
            await self._ceiling[0](probe, timeout=self._settings.timeout, metadata=self._metadata)
        except aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise TargetUnsuitable(
                    "the server does not serve onnet.v1.Bench/Ceiling: start it with "
                    "`onnet serve --bench-ceiling` (ONNET_BENCH_CEILING=1), or drop --ceiling"
                ) from None
            raise _preflight_error(self._target.address, error) from None

    async def _first_syncs(self, clients: list[VirtualClient]) -> dict[str, int]:
        """Each client's first, paying sync, all at once; never part of the figures."""
        codes = await asyncio.gather(
            *(
                self._call(self._discover[i % len(self._discover)], client)
                for i, client in enumerate(clients)
            )
        )
        return dict(Counter(code.name for code, _ in codes))

    async def _call(self, method: Method, client: VirtualClient) -> tuple[grpc.StatusCode, int]:
        """One call: its status code and, when it succeeded, how many hashes matched."""
        try:
            response = await method(
                client.request(), timeout=self._settings.timeout, metadata=self._metadata
            )
        except aio.AioRpcError as error:
            return error.code(), 0
        client.answered(response)
        return grpc.StatusCode.OK, len(response.matched_indexes)

    async def _phase(
        self, name: str, methods: list[Method], clients: list[VirtualClient]
    ) -> PhaseResult:
        settings = self._settings
        samples = Samples()
        window = _Window(self._cpu)

        async def call(number: int) -> tuple[grpc.StatusCode, int, int]:
            # Each client keeps to one connection, as an app would.
            client = clients[number % len(clients)]
            code, matches = await self._call(
                methods[(number % len(clients)) % len(methods)], client
            )
            return code, client.book.size, matches

        start = time.perf_counter()
        table = None
        if settings.rate is not None:
            table = Timetable.for_run(
                start,
                settings.rate,
                settings.warmup,
                duration=settings.duration,
                requests=settings.requests,
            )
        window_start = table.window_start if table is not None else start + settings.warmup
        opening = asyncio.get_running_loop().create_task(window.open_at(window_start))
        drawing = self._live.watch(name, samples, _position(settings, samples, start, window_start))
        missed, max_late = 0, 0.0
        try:
            if table is not None:
                missed, max_late = await open_loop(call, table, settings, samples)
            else:
                await closed_loop(call, len(clients), settings, samples, start)
        except BaseException:
            opening.cancel()  # interrupted: no window to open
            await self._live.stop(drawing)
            raise
        await self._live.stop(drawing)
        await opening
        await window.close()
        stats = summarize(
            name,
            samples,
            harness_cpu=window.harness_cpu,
            server_cpu=window.server_cpu,
            missed=missed,
            max_late=max_late,
        )
        if "RESOURCE_EXHAUSTED" in stats.errors and self._settings.resync:
            self._warnings.append(
                f"{name} answered RESOURCE_EXHAUSTED: all virtual clients share one account, "
                "and the server limits each account's calls (ONNET_ACCOUNT_CALLS per "
                "ONNET_ACCOUNT_CALLS_PERIOD, ONNET_ACCOUNT_CONCURRENT_CALLS at once); start it "
                "with ONNET_ACCOUNT_CALLS=0 ONNET_ACCOUNT_CONCURRENT_CALLS=0 for a load test"
            )
        if "PERMISSION_DENIED" in stats.errors and name == "Discover":
            self._warnings.append(
                "Discover answered PERMISSION_DENIED: outside development mode the credential's "
                "account must be a registered user (e.g. issue it for loadtest-0000000 after "
                "--populate)"
            )
        if window.cpu_error:
            self._warnings.append(f"{name}: no server CPU figure: {window.cpu_error}")
        self._check_open_loop(stats)
        return PhaseResult(stats, samples)

    def _check_open_loop(self, stats: PhaseStats) -> None:
        settings = self._settings
        if settings.rate is None:
            return
        achieved = stats.calls / stats.seconds if stats.seconds > 0 else 0.0
        if stats.missed or achieved < _BEHIND * settings.rate:
            self._warnings.append(
                f"{stats.method}: the open loop fell behind its timetable: {achieved:,.0f} of "
                f"{settings.rate:,g} calls/s answered, {stats.missed:,} calls never sent "
                f"(--max-in-flight {settings.max_in_flight} reached), calls sent up to "
                f"{stats.max_late * 1000:,.0f} ms late; latency counts from when each call was "
                "due, so it includes that wait"
            )

    def _check_harness(self, discover: PhaseStats, ceiling: PhaseStats | None) -> None:
        for stats in (ceiling, discover):
            if stats is not None and stats.harness_cores >= _HARNESS_BOUND:
                self._warnings.append(
                    f"{stats.method}: the harness kept {stats.harness_cores:.2f} cores busy: it "
                    "may be what limits the rate; run several harness processes, or the "
                    "harness on another machine"
                )


class _Window:
    """CPU readings, the harness's and the server's, at a measured window's start and end."""

    def __init__(self, server_cpu: ServerCpu) -> None:
        self._server = server_cpu
        self._harness_start = time.process_time()
        self._server_start: float | None = None
        self.harness_cpu = 0.0
        self.server_cpu: float | None = None
        self.cpu_error = ""

    async def open_at(self, moment: float) -> None:
        """Take the opening readings at clock reading ``moment``."""
        delay = moment - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        self._harness_start = time.process_time()
        self._server_start = await self._read_server()

    async def close(self) -> None:
        """Take the closing readings."""
        self.harness_cpu = time.process_time() - self._harness_start
        end = await self._read_server()
        if self._server_start is not None and end is not None:
            self.server_cpu = max(end - self._server_start, 0.0)

    async def _read_server(self) -> float | None:
        if not self._server:
            return None
        try:
            # A metrics endpoint is read over HTTP: off the event loop, which drives calls.
            return await asyncio.to_thread(self._server.seconds)
        except CpuReadError as exc:
            self.cpu_error = str(exc)
            return None


def _position(
    settings: Settings, samples: Samples, start: float, window_start: float
) -> Callable[[], str]:
    """How far a phase is, for the progress line: in the warm-up, or in the window."""

    def position() -> str:
        now = time.perf_counter()
        if now < window_start:
            return f"warm-up {now - start:.1f}/{settings.warmup:g} s"
        if settings.requests is not None:
            return f"{samples.calls:,}/{settings.requests:,} calls"
        assert settings.duration is not None
        return f"{min(now - window_start, settings.duration):.1f}/{settings.duration:g} s"

    return position


def _preflight_error(address: str, error: aio.AioRpcError) -> LoadTestError:
    code = error.code()
    details = error.details() or code.name
    if code in _UNREACHABLE:
        return TargetUnreachable(f"cannot reach the onnet service at {address}: {details}")
    hint = ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        hint = " (set ONNET_TOKEN or --token-file to an account credential)"
    elif code == grpc.StatusCode.PERMISSION_DENIED:
        hint = (
            " (outside development mode the credential's account must be a registered user, "
            "e.g. issue it for loadtest-0000000 after --populate)"
        )
    return TargetRefused(f"the service refused the harness: {code.name}: {details}{hint}")
