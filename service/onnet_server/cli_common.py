"""What every ``onnet`` command shares: exit codes, error output, and how to reach a server.

Credentials come from a file or the environment, never from the command line, where the
process list would show them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc

import onnet
from onnet_server.config import ConfigError

__all__ = [
    "DEFAULT_TARGET",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "add_connection_arguments",
    "channel_credentials_of",
    "fail",
    "secret",
    "show_progress",
]

EXIT_OK = 0
EXIT_REFUSED = 1
"""The service refused the request."""
EXIT_USAGE = 2
"""Bad usage, unreadable input or configuration."""
EXIT_UNREACHABLE = 3
"""The service could not be reached."""
DEFAULT_TARGET = "127.0.0.1:50051"


def fail(message: str) -> None:
    """Tell the person at the terminal what went wrong, on standard error."""
    print(f"onnet: {message}", file=sys.stderr)


def add_connection_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    credential: str = "credential",
) -> None:
    """--target, --timeout, --token-file and the TLS files of a command that calls a server."""
    parser.add_argument(
        "--target", default=DEFAULT_TARGET, metavar="HOST:PORT", help="the onnet service"
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


def secret(path: Path | None, variable: str, what: str) -> str | None:
    """A credential from ``path``, else from the environment ``variable``, else None."""
    if path is not None:
        try:
            return path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the {what} file {path}: {exc}") from None
    return os.environ.get(variable) or None


def channel_credentials_of(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS from --ca/--cert/--key or ONNET_TLS_*; None (plaintext) when none is given."""
    ca = args.ca or os.environ.get("ONNET_TLS_CA")
    cert = args.cert or os.environ.get("ONNET_TLS_CLIENT_CERT")
    key = args.key or os.environ.get("ONNET_TLS_CLIENT_KEY")
    if not (ca or cert or key):
        return None
    try:
        return onnet.channel_credentials(ca, cert, key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def show_progress(choice: str) -> bool:
    """Whether to draw a progress bar for --progress ``choice`` (auto: on a terminal)."""
    return choice == "always" or (choice == "auto" and sys.stderr.isatty())
