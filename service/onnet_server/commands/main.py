"""The ``onnet`` command: run the server, and talk to one as a client.

Exit codes: 0 success; 1 the service refused the request (or, for ``normalize``, some line
was invalid); 2 bad usage or unreadable input; 3 the service could not be reached.

Client commands take their credential from ONNET_TOKEN (or ``--token-file``) and their TLS
material from ONNET_TLS_CA, ONNET_TLS_CLIENT_CERT and ONNET_TLS_CLIENT_KEY (or the flags):
a token on the command line would show in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import onnet
from onnet_server.commands.admin import add_admin_commands
from onnet_server.commands.common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    INTERACTIVE_RETRY,
    add_connection_arguments,
    channel_credentials_of,
    fail,
    redis_url_argument,
    secret,
    show_progress,
    tls_files_of,
    unreachable,
)
from onnet_server.commands.loadtest import add_loadtest_command
from onnet_server.commands.make_secrets import add_secret_commands
from onnet_server.config import ConfigError, ServeSettings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and exits with) the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(arguments)
    args.arguments = arguments
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        fail(f"configuration error: {_with_flags(str(exc))}")
        code = EXIT_USAGE
    except (onnet.AddressBookError, onnet.InvalidNumberError) as exc:
        fail(str(exc))
        code = EXIT_USAGE
    except onnet.QuotaExceededError as exc:  # its reason says when to retry
        fail(f"the service refused the request: {exc.reason}")
        code = EXIT_REFUSED
    except (onnet.UnavailableError, onnet.DeadlineExceededError) as exc:
        fail(unreachable(args.target, exc.reason, any(tls_files_of(args))))
        code = EXIT_UNREACHABLE
    except onnet.ServiceError as exc:
        fail(f"the service refused the request: {exc.reason}")
        code = EXIT_REFUSED
    except onnet.ProtocolError as exc:  # the SDK's own finding: nothing was refused
        fail(f"cannot use the server's answer: {exc}")
        code = EXIT_REFUSED
    except onnet.OnnetError as exc:  # a key file, say: the message names it and why
        fail(str(exc))
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


# The variables that `onnet serve` also takes as flags: a configuration error (which names
# variables: the configuration is read from both) names both, since whoever used the flag
# never saw the variable.
_FLAG_OF = {
    "ONNET_LISTEN": "--listen",
    "ONNET_TLS_CERT": "--tls-cert",
    "ONNET_TLS_KEY": "--tls-key",
    "ONNET_TLS_CLIENT_CA": "--tls-client-ca",
    "ONNET_ALLOW_PLAINTEXT": "--allow-plaintext",
    "ONNET_MAX_BATCH": "--max-batch",
    "ONNET_LOG_LEVEL": "--log-level",
    "ONNET_LOG_FORMAT": "--log-format",
    "ONNET_REDIS_URL": "--redis",
    "ONNET_REDIS_CLUSTER": "--redis-cluster",
    "ONNET_METRICS_LISTEN": "--metrics-listen",
    "ONNET_WORKERS": "--workers",
}


def _with_flags(message: str) -> str:
    """``message`` with each variable that has a flag written as "--flag (VARIABLE[=value])"."""
    return re.sub(
        r"\b(ONNET_[A-Z_]+)\b(=\w+)?",
        lambda found: (
            f"{_FLAG_OF[found[1]]} ({found[0]})"
            if found[1] in _FLAG_OF and _FLAG_OF[found[1]] not in message
            else found[0]
        ),
        message,
    )


# Codes people type that are not the ISO 3166 ones phonenumbers knows.
_REGION_MIX_UPS = {"UK": "GB", "EL": "GR", "EN": "GB"}


def _region(text: str) -> str:
    if not onnet.is_supported_region(text):
        meant = _REGION_MIX_UPS.get(text.upper())
        if meant is not None:
            raise argparse.ArgumentTypeError(f"unknown region code {text!r}: did you mean {meant}?")
        raise argparse.ArgumentTypeError(f"unknown region code {text!r} (try US, GB, DE, ...)")
    return text.upper()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnet", description="Private contact discovery: server and client."
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    _add_serve(commands)

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        return _client_command(commands, name, help_text)

    _add_registry_commands(client_command)

    discover = client_command("discover", "find which contacts of an address book are on-net")
    discover.add_argument("file", type=Path, metavar="FILE", help="a .csv or .vcf address book")
    discover.add_argument("--region", type=_region, help="region for national numbers, e.g. US")
    discover.add_argument("--json", action="store_true", help="print JSON instead of a table")
    discover.add_argument(
        "--private",
        action="store_true",
        help="private mode: send blinded OPRF elements and bucket numbers, not hashes",
    )
    discover.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="keep the re-sync token here (created, then updated): the next discover of "
        "these contacts costs no quota",
    )
    discover.set_defaults(run=_discover)

    bulk = client_command("import", "register many users from a CSV file")
    bulk.add_argument(
        "file", type=Path, metavar="FILE", help="CSV rows: user_id,e164[,discoverable]"
    )
    bulk.add_argument("--batch", type=int, default=1000, metavar="N", help="rows per message")
    bulk.add_argument(
        "--progress",
        choices=["auto", "always", "never"],
        default="auto",
        help="progress bar on standard error (auto: when it is a terminal)",
    )
    bulk.set_defaults(run=_import, timeout=None)

    normalize = commands.add_parser(
        "normalize",
        help="normalize numbers read from standard input to E.164",
        description="Read one raw number per line on standard input; write one line per "
        "input line: the E.164 number, or 'invalid: ' and the reason.",
    )
    normalize.add_argument("--region", type=_region, help="region for national numbers")
    normalize.set_defaults(run=_normalize, target=None)

    new_pepper = commands.add_parser(
        "new-pepper",
        help="write a new random pepper to a file (mode 0600)",
        description="Create FILE holding a new 32-byte pepper for ONNET_PEPPER_FILE.",
    )
    new_pepper.add_argument("file", type=Path, metavar="FILE")
    new_pepper.set_defaults(run=_new_pepper, target=None)

    add_secret_commands(commands)
    add_admin_commands(commands)
    add_loadtest_command(commands)
    return parser


def _client_command(
    commands: Any,  # noqa: ANN401 - argparse's subparsers action
    name: str,
    help_text: str,
) -> argparse.ArgumentParser:
    """A subcommand that talks to a server: target, deadline, credential, TLS."""
    command: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text
    )
    add_connection_arguments(command)
    return command


def _add_registry_commands(client_command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The commands of trusted services: register, unregister, block, lookup, screen."""
    register = client_command("register", "register a user with their verified number")
    register.add_argument("user_id", metavar="USER_ID")
    register.add_argument("number", metavar="NUMBER", help="E.164, or national with --region")
    register.add_argument("--region", type=_region, help="region for a national number")
    register.add_argument(
        "--not-discoverable", action="store_true", help="never match this user in Discover"
    )
    register.set_defaults(run=_register)

    unregister = client_command("unregister", "erase a user from the registry")
    unregister.add_argument("user_id", metavar="USER_ID")
    unregister.set_defaults(run=_unregister)

    for name, help_text in (
        ("block", "block a number for a user: its holder never finds the user"),
        ("unblock", "remove a number from a user's blocklist"),
    ):
        command = client_command(name, help_text)
        command.add_argument("user_id", metavar="USER_ID")
        command.add_argument("number", metavar="NUMBER", help="E.164, or national with --region")
        command.add_argument("--region", type=_region, help="region for a national number")
        command.set_defaults(run=_set_blocked, blocked=name == "block")

    lookup = client_command("lookup", "call routing: which user holds each number")
    lookup.add_argument("numbers", nargs="+", metavar="NUMBER", help="E.164, or with --region")
    lookup.add_argument("--region", type=_region, help="region for national numbers")
    lookup.set_defaults(run=_lookup)

    screen = client_command("screen", "call screening: may CALLER ring the user CALLEE")
    screen.add_argument("caller", metavar="CALLER", help="the calling number")
    screen.add_argument("callee", metavar="CALLEE_USER_ID")
    screen.add_argument("--region", type=_region, help="region for a national number")
    screen.set_defaults(run=_screen)


def _add_serve(commands: Any) -> None:  # noqa: ANN401 - argparse's subparsers action
    serve = commands.add_parser(
        "serve",
        help="run the service (embedded in-memory registry)",
        description="Run the Discovery and Registry services. Settings come from ONNET_* "
        "variables (see README); the flags override them.",
    )
    serve.add_argument("--listen", metavar="HOST:PORT", help="default 127.0.0.1:50051")
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text (default) or json: one JSON object per line, for log pipelines",
    )
    serve.add_argument("--max-batch", type=int, metavar="N", help="most hashes per Discover")
    serve.add_argument(
        "--redis",
        metavar="URL",
        type=redis_url_argument,
        help="keep the registry in Redis (redis://...; a password only in $ONNET_REDIS_URL)",
    )
    serve.add_argument(
        "--redis-cluster", metavar="HOST:PORT[,...]", help="keep the registry in Redis Cluster"
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development mode: calls without a credential are let through (loopback, "
        "embedded store only; never in production)",
    )
    serve.add_argument(
        "--workers", type=int, metavar="N", help="server processes on one port (needs Redis)"
    )
    serve.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics over HTTP"
    )
    serve.add_argument(
        "--bench-ceiling",
        action="store_true",
        help="also serve onnet.v1.Bench/Ceiling, a Discover that does no work (load tests)",
    )
    serve.add_argument(
        "--allow-plaintext",
        action="store_true",
        help="serve plaintext beyond loopback (only behind a mesh or proxy that terminates TLS)",
    )
    serve.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve TLS with this cert")
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="the certificate's key")
    serve.add_argument(
        "--tls-client-ca", type=Path, metavar="FILE", help="require client certs from this CA"
    )
    serve.set_defaults(run=_serve, target=None)


def _serve(args: argparse.Namespace) -> int:
    from onnet_server.logs import (  # noqa: PLC0415 - only the server needs them
        SILENCED,
        configure_logging,
        silence_grpc_core,
    )
    from onnet_server.server import serve  # noqa: PLC0415

    silenced = silence_grpc_core()
    if silenced:
        # gRPC's C core read its tracing settings when it was imported, and its tracing
        # prints request headers, credentials included: start again, in this same process,
        # with them off.
        os.environ[SILENCED] = ",".join(silenced)
        os.execv(sys.executable, [sys.executable, "-m", "onnet_server", *args.arguments])  # noqa: S606
    silenced = [name for name in os.environ.pop(SILENCED, "").split(",") if name]

    overrides = {
        "listen": args.listen,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "max_batch": args.max_batch,
        "redis_url": args.redis,
        "redis_cluster": args.redis_cluster,
        "dev_mode": args.dev or None,
        "bench_ceiling": args.bench_ceiling or None,
        "allow_plaintext": args.allow_plaintext or None,
        "workers": args.workers,
        "metrics_listen": args.metrics_listen,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_client_ca": args.tls_client_ca,
    }
    values = {key: value for key, value in overrides.items() if value is not None}
    config = ServeSettings.from_env(**values)
    configure_logging(config.log_level, config.log_format)
    if silenced:
        logging.getLogger("onnet_server").warning(
            "ignored %s: gRPC's tracing would log request headers and credentials",
            " and ".join(silenced),
        )
    if config.workers > 1:
        from onnet_server.workers import run_workers  # noqa: PLC0415

        return run_workers(config)
    try:
        asyncio.run(serve(config))
    except (OSError, RuntimeError) as exc:
        fail(f"cannot serve on {config.listen}: {exc}")
        return EXIT_USAGE
    return EXIT_OK


def _registry(args: argparse.Namespace, timeout: float | None) -> onnet.RegistryClient:
    return onnet.RegistryClient(
        args.target,
        timeout=timeout if timeout is not None else 10.0,
        token=secret(args.token_file, "ONNET_TOKEN", "token"),
        credentials=channel_credentials_of(args),
        retry=INTERACTIVE_RETRY if timeout is not None else None,  # an import retries
    )


def _register(args: argparse.Namespace) -> int:
    e164 = onnet.normalize(args.number, args.region)
    with _registry(args, args.timeout) as client:
        result = client.register(args.user_id, e164, discoverable=not args.not_discoverable)
    print(f"{'moved' if result.updated else 'registered'} {args.user_id}")
    if result.displaced_user_id:
        print(f"the number was taken from {result.displaced_user_id}, who is now unregistered")
    return EXIT_OK


def _unregister(args: argparse.Namespace) -> int:
    with _registry(args, args.timeout) as client:
        client.unregister(args.user_id)
    print(f"unregistered {args.user_id}")
    return EXIT_OK


def _set_blocked(args: argparse.Namespace) -> int:
    e164 = onnet.normalize(args.number, args.region)
    with _registry(args, args.timeout) as client:
        changed = (
            client.block(args.user_id, e164) if args.blocked else client.unblock(args.user_id, e164)
        )
    verb = "blocked" if args.blocked else "unblocked"
    print(f"{verb} for {args.user_id}" if changed else f"already {verb} for {args.user_id}")
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from onnet_server.commands.import_csv import BadLine, count_lines, read_import_file  # noqa: PLC0415
    from onnet_server.commands.progress import ProgressBar  # noqa: PLC0415

    if args.file.suffix.lower() in {".vcf", ".vcard"}:
        fail(
            f"{args.file} is an address book (vCard); import takes CSV rows "
            "user_id,e164[,discoverable]. To check contacts: onnet discover FILE"
        )
        return EXIT_USAGE
    try:
        total = count_lines(args.file)
    except OSError as exc:
        fail(f"cannot read {args.file}: {exc.strerror}")
        return EXIT_USAGE
    bar = ProgressBar(total, sys.stderr) if show_progress(args.progress) else None
    line_of_row: list[int] = []
    bad_lines: list[BadLine] = []

    def rows() -> Iterator[onnet.ImportRow]:
        for item in read_import_file(args.file):
            if isinstance(item, BadLine):
                bad_lines.append(item)
                continue
            line_of_row.append(item.line)
            yield item.row

    def on_progress(result: onnet.ImportResult, sent: int) -> None:
        if bar is not None:
            bar.update(result.imported + len(result.rejected) + len(bad_lines))

    started = time.monotonic()
    try:
        with _registry(args, None) as client:
            result = client.import_users(rows(), batch_size=args.batch, progress=on_progress)
    except UnicodeDecodeError:
        fail(f"{args.file} is not UTF-8 text")
        return EXIT_USAGE
    if bar is not None:
        bar.finish(total)
    elapsed = time.monotonic() - started
    skipped = sorted(
        [(bad.line, bad.reason) for bad in bad_lines]
        + [(line_of_row[r.row], f"{r.field}: {r.reason}") for r in result.rejected]
    )
    for line, reason in skipped:
        print(f"{args.file}:{line}: skipped: {reason}", file=sys.stderr)
    rate = result.imported / elapsed if elapsed > 0 else 0.0
    print(
        f"imported {_count(result.imported, 'user')} in {elapsed:.1f} s ({rate:,.0f}/s), "
        f"skipped {_count(len(skipped), 'line')}"
    )
    return EXIT_REFUSED if skipped else EXIT_OK


def _discover(args: argparse.Namespace) -> int:
    numbers = onnet.read_address_book(args.file)
    state = _load_state(args.state)
    with onnet.Client(
        args.target,
        timeout=args.timeout,
        token=secret(args.token_file, "ONNET_TOKEN", "token"),
        credentials=channel_credentials_of(args),
        sync_state=state,
        retry=INTERACTIVE_RETRY,
    ) as client:
        try:
            result = client.discover(numbers, default_region=args.region, private=args.private)
        finally:
            if args.state is not None:
                _save_state(args.state, client.sync_state)
        left = client.quota_remaining()
    if args.json:
        print(json.dumps(_as_json(result, left), indent=2, ensure_ascii=False))
    else:
        _print_table(result, sys.stdout)
        print(_quota_line(result.charged, left))
    return EXIT_OK


def _quota_line(charged: int, left: int | None) -> str:
    """What the sync cost the account, and what it may still spend."""
    spent = f"quota: {_count(charged, 'new number')} charged"
    if charged == 0:
        spent += " (every number was paid for before)"
    return spent if left is None else f"{spent}, {left:,} left"


def _lookup(args: argparse.Namespace) -> int:
    numbers = [onnet.normalize(number, args.region) for number in args.numbers]
    with _registry(args, args.timeout) as client:
        holders = client.lookup(numbers)
    rows = [("NUMBER", "E.164", "USER ID")]
    rows += [
        (raw, e164, holder or "-")
        for raw, e164, holder in zip(args.numbers, numbers, holders, strict=True)
    ]
    _print_rows(rows, sys.stdout)
    return EXIT_OK


def _screen(args: argparse.Namespace) -> int:
    caller = onnet.normalize(args.caller, args.region)
    with _registry(args, args.timeout) as client:
        verdict = client.screen(caller, args.callee)
    print(verdict.value)
    return EXIT_OK


def _load_state(path: Path | None) -> onnet.SyncState | None:
    if path is None or not path.exists():
        return None
    try:
        return onnet.SyncState.from_bytes(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the sync state {path}: {exc}") from None


def _save_state(path: Path, state: onnet.SyncState) -> None:
    # It holds hashes of the address book: private to the user, replaced whole. A fresh
    # file of our own (never a stale one's mode, never through a link), then renamed.
    descriptor, partial = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(state.to_bytes())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _as_json(result: onnet.DiscoveryResult, quota_remaining: int | None) -> dict[str, object]:
    return {
        "matches": [{"raw": m.raw, "e164": m.e164, "user_id": m.user_id} for m in result.matches],
        "rejected": [{"raw": r.raw, "reason": r.reason} for r in result.rejected],
        "uploaded": result.uploaded,
        "charged": result.charged,
        "quota_remaining": quota_remaining,
    }


def _print_table(result: onnet.DiscoveryResult, out: TextIO) -> None:
    rows = [("CONTACT", "E.164", "USER ID")]
    rows += [(m.raw, m.e164, m.user_id) for m in result.matches]
    _print_rows(rows, out)
    users = _count(len({m.user_id for m in result.matches}), "user")
    entries = _count(len(result.matches), "entry", "entries")
    print(
        f"\n{users} on-network ({entries}), "
        f"{_count(result.uploaded, 'distinct number')} checked, "
        f"{_count(len(result.rejected), 'entry', 'entries')} skipped",
        file=out,
    )
    for rejected in result.rejected:
        print(f"  skipped {rejected.raw!r}: {rejected.reason}", file=out)


def _print_rows(rows: list[tuple[str, str, str]], out: TextIO) -> None:
    """A header row and its rows, in columns as wide as their widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def _normalize(args: argparse.Namespace) -> int:
    code = EXIT_OK
    for line in sys.stdin:
        try:
            print(onnet.normalize(line.rstrip("\r\n"), args.region))
        except onnet.InvalidNumberError as exc:
            print(f"invalid: {exc.reason}")
            code = EXIT_REFUSED
    return code


def _new_pepper(args: argparse.Namespace) -> int:
    from onnet_server.pepper import write_pepper_file  # noqa: PLC0415

    try:
        pepper = write_pepper_file(args.file)
    except FileExistsError:
        fail(f"{args.file} exists; refusing to overwrite a pepper")
        return EXIT_USAGE
    except OSError as exc:
        fail(f"cannot write {args.file}: {exc.strerror}")
        return EXIT_USAGE
    print(f"wrote pepper {pepper.key_id} to {args.file}; set ONNET_PEPPER_FILE={args.file}")
    return EXIT_OK
