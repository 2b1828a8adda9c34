"""``onnet loadtest``: the load-test harness's command line.

It reaches the target as any client does (``--target``, TLS from ``--ca/--cert/--key`` or
ONNET_TLS_*, the account credential from ``--token-file`` or ONNET_TOKEN), optionally
registers a synthetic population first, runs the phases (``onnet_server.loadtest.runner``)
and prints a table or JSON, and a PNG with ``--plot``.

Exit codes: 0 the run completed (failed calls are reported, not fatal); 1 the service
refused the harness itself (a bad credential, a refused import) or no Discover call
succeeded; 2 bad usage or settings the server cannot take; 3 the target could not be
reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc

import onnet
from onnet_server.commands.common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    add_connection_arguments,
    channel_credentials_of,
    fail,
    secret,
    show_progress,
)
from onnet_server.commands.progress import ProgressBar
from onnet_server.loadtest.live import LiveLine
from onnet_server.loadtest.plot import PlotUnavailableError, check_plotting, write_plot
from onnet_server.loadtest.population import MAX_USERS, make_books
from onnet_server.loadtest.registration import register_population
from onnet_server.loadtest.report import (
    Population,
    Report,
    as_json,
    describe_settings,
    render_table,
)
from onnet_server.loadtest.runner import LoadTestError, RunResult, run
from onnet_server.loadtest.server_cpu import (
    CpuReadError,
    CpuSource,
    MetricsCpu,
    ProcessCpu,
    ServerCpu,
)
from onnet_server.loadtest.settings import Settings, Target

__all__ = ["add_loadtest_command"]

DEFAULT_MATCH_SHARE = 0.1
"""Share of each book that is registered, when a population is given and no share is."""

_DESCRIPTION = """\
Drive an onnet server with virtual clients and report requests/s, hashes/s, latency
percentiles (p50, p90, p99, p99.9), errors by status code and, with --server-pid or
--server-metrics, the server's CPU per request.

Each virtual client has an address book of --batch distinct numbers, --match-share of
them registered. It syncs once (paying its book from the account's quota of new numbers,
before the measurement), then re-syncs: the same book with its last re-sync token, which
costs nothing. Every client uses the one account credential, so the first syncs cost
--concurrency x --batch new numbers, and every run pays them again: beyond the default
quota of 20,000, start the server with a larger ONNET_QUOTA_NEW_NUMBERS. Refused calls are
counted by status code.

Closed loop (default): --concurrency clients call back to back. Open loop (--rate R): R
calls/s on a fixed timetable, latency counted from when each call was due, so a server
that falls behind shows the wait its clients would see.

Outside development mode (onnet serve --dev) Discovery serves registered accounts only:
the credential's subject must be a registered user, e.g. loadtest-0000000 after
--populate. --populate registers loadtest-NNNNNNN users at +1 650/415/510 numbers: never
run it against a registry of real users (a registration takes a number from whoever
held it)."""


def add_loadtest_command(commands: Any) -> None:  # noqa: ANN401 - argparse's subparsers action
    """Add ``loadtest`` to the ``onnet`` command."""
    command: argparse.ArgumentParser = commands.add_parser(
        "loadtest",
        help="load-test a server: requests/s, latency percentiles, errors, server CPU",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _target_arguments(command)
    _shape_arguments(command)
    _population_arguments(command)
    _output_arguments(command)
    command.set_defaults(run=_loadtest)


def _target_arguments(command: argparse.ArgumentParser) -> None:
    target = command.add_argument_group("target")
    add_connection_arguments(target, credential="account credential")


def _shape_arguments(command: argparse.ArgumentParser) -> None:
    shape = command.add_argument_group("load")
    shape.add_argument(
        "--concurrency",
        type=int,
        default=8,
        metavar="N",
        help="virtual clients (closed loop: calls in flight; default 8)",
    )
    shape.add_argument(
        "--rate", type=float, metavar="R", help="open loop: R calls/s on a fixed timetable"
    )
    shape.add_argument(
        "--max-in-flight",
        type=int,
        default=1000,
        metavar="N",
        help="open loop: the most calls in flight; beyond, calls go late (default 1000)",
    )
    length = shape.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, metavar="S", help="seconds measured (default 10)")
    length.add_argument("--requests", type=int, metavar="N", help="calls measured")
    shape.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds of calls before the measurement, left out (default 1)",
    )
    shape.add_argument(
        "--batch", type=int, default=1000, metavar="N", help="hashes per call (default 1000)"
    )
    shape.add_argument(
        "--no-resync",
        dest="resync",
        action="store_false",
        help="send plain calls without the re-sync token: every call spends its whole book "
        "of the account's quota of new numbers, until RESOURCE_EXHAUSTED",
    )
    shape.add_argument(
        "--ceiling",
        action="store_true",
        help="also measure onnet.v1.Bench/Ceiling (a Discover that does no work; the server "
        "needs --bench-ceiling) first, and report Discover's requests/s as a fraction of it",
    )
    shape.add_argument(
        "--connections",
        type=int,
        default=1,
        metavar="N",
        help="HTTP/2 connections to spread the clients over (default 1)",
    )


def _population_arguments(command: argparse.ArgumentParser) -> None:
    population = command.add_argument_group("population")
    users = population.add_mutually_exclusive_group()
    users.add_argument(
        "--populate",
        type=int,
        metavar="N",
        help=f"first register N users loadtest-0000000... (at most {MAX_USERS:,}); needs a "
        "service credential",
    )
    users.add_argument(
        "--users",
        type=int,
        metavar="N",
        help="the registry already holds N users from an earlier --populate",
    )
    population.add_argument(
        "--match-share",
        type=float,
        metavar="X",
        help=f"share of each book that is registered (default {DEFAULT_MATCH_SHARE} with "
        "--populate or --users, else 0)",
    )
    population.add_argument(
        "--seed", type=int, default=1, metavar="N", help="picks the books' numbers (default 1)"
    )
    population.add_argument(
        "--service-token-file",
        type=Path,
        metavar="FILE",
        help="service credential for --populate (else $ONNET_SERVICE_TOKEN)",
    )


def _output_arguments(command: argparse.ArgumentParser) -> None:
    output = command.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print one JSON document")
    output.add_argument(
        "--plot", type=Path, metavar="FILE", help="write latency over time and histogram (PNG)"
    )
    output.add_argument(
        "--progress",
        choices=["auto", "always", "never"],
        default="auto",
        help="progress on standard error (auto: when it is a terminal)",
    )
    output.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="read the server's CPU time from /proc (repeat for each worker process)",
    )
    output.add_argument(
        "--server-metrics",
        action="append",
        default=[],
        metavar="URL",
        help="read it from process_cpu_seconds_total at this Prometheus endpoint "
        "(onnet serve --metrics-listen; repeat for each worker)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    users = args.populate if args.populate is not None else (args.users or 0)
    share = args.match_share
    if share is None:
        share = DEFAULT_MATCH_SHARE if users else 0.0
    duration = args.duration if args.duration is not None else 10.0
    settings = Settings(
        concurrency=args.concurrency,
        rate=args.rate,
        max_in_flight=args.max_in_flight,
        duration=duration if args.requests is None else None,
        requests=args.requests,
        warmup=args.warmup,
        batch=args.batch,
        match_share=share,
        users=users,
        seed=args.seed,
        resync=args.resync,
        ceiling=args.ceiling,
        connections=args.connections,
        timeout=args.timeout,
    )
    settings.check()
    return settings


def _server_cpu(args: argparse.Namespace) -> ServerCpu:
    sources: list[CpuSource] = [ProcessCpu(pid) for pid in args.server_pid]
    sources += [MetricsCpu(url) for url in args.server_metrics]
    cpu = ServerCpu(sources)
    cpu.seconds()  # fail now, not after the run, if a source cannot be read
    return cpu


def _populate(args: argparse.Namespace, credentials: grpc.ChannelCredentials | None) -> Population:
    users: int = args.populate
    token = secret(args.service_token_file, "ONNET_SERVICE_TOKEN", "service token")
    bar = ProgressBar(users, sys.stderr, unit="users") if show_progress(args.progress) else None
    registered = register_population(
        args.target,
        users,
        credentials=credentials,
        service_token=token,
        progress=bar.update if bar is not None else None,
    )
    if bar is not None:
        bar.finish(registered.imported + registered.rejected)
    return Population(users, registered.imported, registered.rejected, registered.seconds)


def _loadtest(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        if args.plot is not None:
            check_plotting()
        server_cpu = _server_cpu(args)
    except (ValueError, PlotUnavailableError, CpuReadError) as exc:
        fail(str(exc))
        return EXIT_USAGE
    credentials = channel_credentials_of(args)
    target = Target(args.target, credentials, secret(args.token_file, "ONNET_TOKEN", "token"))
    population = None
    if args.populate:
        try:
            population = _populate(args, credentials)
        except (onnet.UnavailableError, onnet.DeadlineExceededError) as exc:
            fail(f"cannot reach the onnet service at {args.target}: {exc.reason}")
            return EXIT_UNREACHABLE
        except onnet.ServiceError as exc:
            fail(f"the Registry refused the population: {exc.reason}")
            return EXIT_REFUSED
        if population.rejected:
            fail(f"the Registry rejected {population.rejected:,} of the population's users")
    books = make_books(
        settings.concurrency, settings.batch, settings.match_share, settings.users, settings.seed
    )
    live = LiveLine(sys.stderr if show_progress(args.progress) else None)
    try:
        result = asyncio.run(run(target, settings, books, server_cpu=server_cpu, live=live))
    except LoadTestError as exc:
        fail(str(exc))
        return exc.exit_code
    report = Report(
        args.target, settings, result, population, server_cpu.describe() if server_cpu else None
    )
    return _publish(args, report, result, settings)


def _publish(
    args: argparse.Namespace, report: Report, result: RunResult, settings: Settings
) -> int:
    """Print the report (and write the plot); the exit code of the run."""
    if args.json:
        print(json.dumps(as_json(report), indent=2))
    else:
        sys.stdout.write(render_table(report))
    if args.plot is not None:
        try:
            write_plot(args.plot, result, f"{args.target}: {describe_settings(settings)}")
        except OSError as exc:
            fail(f"cannot write {args.plot}: {exc.strerror}")
            return EXIT_USAGE
        # On standard error: standard output may be the --json report.
        print(f"wrote the latency plot to {args.plot}", file=sys.stderr)
    if result.discover.stats.calls and not result.discover.stats.ok:
        fail("no Discover call succeeded: see the errors by status code")
        return EXIT_REFUSED
    return EXIT_OK
