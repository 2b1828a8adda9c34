"""What every ``onnet`` command shares: exit codes, error output, and how to reach a server.

Credentials come from a file or the environment, never from the command line, where the
process list would show them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import grpc

import onnet
from onnet_server.config import ConfigError

__all__ = [
    "DEFAULT_TARGET",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "INTERACTIVE_RETRY",
    "add_connection_arguments",
    "channel_credentials_of",
    "fail",
    "redis_url_argument",
    "secret",
    "show_progress",
    "target",
    "tls_files_of",
    "unreachable",
]

EXIT_OK = 0
EXIT_REFUSED = 1
"""The service refused the request."""
EXIT_USAGE = 2
"""Bad usage, unreadable input or configuration."""
EXIT_UNREACHABLE = 3
"""The service could not be reached."""
DEFAULT_TARGET = "127.0.0.1:50051"
INTERACTIVE_RETRY = onnet.RetryPolicy(attempts=1)
"""Retries of a command someone waits for at a terminal: none. A retry waits for the
connection until the deadline, so a server that is not there would cost the whole timeout
before the message that says so; a person re-runs a command that failed."""


def fail(message: str) -> None:
    """Tell the person at the terminal what went wrong, on standard error."""
    print(f"onnet: {message}", file=sys.stderr)


def redis_url_argument(url: str) -> str:
    """A ``--redis URL`` as given, unless it holds a password (argparse's ``type``).

    The process list shows every command line to every user of the host: a password goes
    in ONNET_REDIS_URL instead. The message does not repeat the URL.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        raise argparse.ArgumentTypeError("not a URL: write redis://HOST:PORT/DB") from None
    # redis-py also reads a password from the query (?password=), unix:// URLs included.
    if password is not None or "password" in parse_qs(parts.query):
        raise argparse.ArgumentTypeError(
            "a password on the command line is shown to every user of this host by the "
            "process list: put the URL in ONNET_REDIS_URL instead"
        )
    return url


def add_connection_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    credential: str = "credential",
) -> None:
    """--target, --timeout, --token-file and the TLS files of a command that calls a server."""
    parser.add_argument(
        "--target",
        type=target,
        default=DEFAULT_TARGET,
        metavar="HOST:PORT",
        help=f"the onnet service (default {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per call (default 10)"
    )
    parser.add_argument(
        "--token-file", type=Path, metavar="FILE", help=f"{credential} (else $ONNET_TOKEN)"
    )
    parser.add_argument(
        "--ca", type=Path, metavar="FILE", help="use TLS, trusting this CA ($ONNET_TLS_CA)"
    )
    parser.add_argument(
        "--cert", type=Path, metavar="FILE", help="client certificate ($ONNET_TLS_CLIENT_CERT)"
    )
    parser.add_argument(
        "--key", type=Path, metavar="FILE", help="its private key ($ONNET_TLS_CLIENT_KEY)"
    )


def target(text: str) -> str:
    """``--target``: HOST:PORT (an IPv6 host in brackets), or a ``unix:`` socket path."""
    if text.startswith("unix:"):
        return text
    host, colon, port = text.rpartition(":")
    if not colon or not host or host.endswith(":"):
        # Without a port gRPC would silently try 443, the HTTPS port.
        raise argparse.ArgumentTypeError(
            f"{text!r} has no port: write HOST:PORT, for example {DEFAULT_TARGET}"
        )
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be a number from 1 to 65535")
    return text


def unreachable(target: str, reason: str, tls: bool) -> str:
    """What to tell someone whose command could not reach ``target``, and what to try."""
    # gRPC's text: "failed to connect to all addresses; last error: UNKNOWN: ipv4:...: why"
    why = reason.rpartition(f"{target}: ")[2] if f"{target}: " in reason else reason
    why = why.removesuffix(": OK")
    if "Connection refused" in why:
        hint = (
            "nothing is listening there; start the service (`onnet serve --dev` in another "
            "terminal) or give --target HOST:PORT"
        )
    elif "CERTIFICATE_VERIFY_FAILED" in why:
        hint = (
            "the server's certificate is not signed by the CA you gave (--ca or ONNET_TLS_CA);"
            " give the CA that signed it"
        )
    elif "handshake" in why.lower() or "TSI_" in why:
        hint = "the TLS handshake failed; check --ca, --cert and --key (or ONNET_TLS_*)"
    elif "Socket closed" in why and not tls:
        hint = "the server may use TLS: give the CA that signed its certificate with --ca FILE"
        hint += " (or ONNET_TLS_CA)"
    elif "Socket closed" in why:
        hint = "the server closed the connection: is it onnet, and does it use TLS?"
    else:
        hint = "is the service running there?"
    return f"cannot reach the onnet service at {target}: {why}\n  hint: {hint}"


def secret(path: Path | None, variable: str, what: str) -> str | None:
    """A credential from ``path``, else from the environment ``variable``, else None."""
    if path is not None:
        try:
            return path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the {what} file {path}: {exc}") from None
    return os.environ.get(variable) or None


def tls_files_of(args: argparse.Namespace) -> tuple[Path | str | None, ...]:
    """The CA, certificate and key files from --ca/--cert/--key or ONNET_TLS_*."""
    return (
        getattr(args, "ca", None) or os.environ.get("ONNET_TLS_CA"),
        getattr(args, "cert", None) or os.environ.get("ONNET_TLS_CLIENT_CERT"),
        getattr(args, "key", None) or os.environ.get("ONNET_TLS_CLIENT_KEY"),
    )


def channel_credentials_of(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS from --ca/--cert/--key or ONNET_TLS_*; None (plaintext) when none is given."""
    ca, cert, key = tls_files_of(args)
    if not (ca or cert or key):
        return None
    try:
        return onnet.channel_credentials(ca, cert, key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def show_progress(choice: str) -> bool:
    """Whether to draw a progress bar for --progress ``choice`` (auto: on a terminal)."""
    return choice == "always" or (choice == "auto" and sys.stderr.isatty())
