"""The ``onnet`` commands that make secrets: development certificates, signing keys, tokens.

Each writes private keys with mode 0600 and never overwrites one unless told to.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from onnet.protocol import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from onnet_server.commands.common import EXIT_OK, EXIT_USAGE, fail

__all__ = ["add_secret_commands"]


def add_secret_commands(commands: Any) -> None:  # noqa: ANN401 - argparse's subparsers action
    """Add ``dev-certs``, ``signing-key`` and ``token`` to the ``onnet`` command."""
    dev_certs = commands.add_parser(
        "dev-certs",
        help="make a local CA, server and client certificates for development",
        description="Write ca.pem, server.pem/.key, service.pem/.key (a trusted service's "
        "client certificate) and client.pem/.key to DIR. Development only.",
    )
    dev_certs.add_argument("directory", type=Path, metavar="DIR")
    dev_certs.add_argument(
        "--host", action="append", metavar="NAME", help="server name or IP (repeatable)"
    )
    dev_certs.add_argument("--days", type=int, default=30, help="validity (default 30)")
    dev_certs.add_argument("--force", action="store_true", help="overwrite existing files")
    dev_certs.set_defaults(run=_dev_certs, target=None)

    keys = commands.add_parser(
        "signing-key",
        help="make an Ed25519 key pair that signs credentials (development)",
        description="Write FILE (the private signing key, PEM, mode 0600, for whoever issues "
        "credentials) and FILE.jwks (its public key as a JWKS, for ONNET_AUTH_JWKS). "
        "Production credentials usually come from your identity provider instead.",
    )
    keys.add_argument("file", type=Path, metavar="FILE")
    keys.set_defaults(run=_signing_key, target=None)

    token = commands.add_parser(
        "token",
        help="issue a credential, a JWT (what the identity provider does)",
        description="Print a JWT (EdDSA) for SUBJECT: an account's user id, or a "
        "service's name with --kind service.",
    )
    token.add_argument("subject", metavar="SUBJECT")
    token.add_argument("--signing-key", type=Path, required=True, metavar="FILE")
    token.add_argument("--kind", choices=["account", "service"], default="account")
    token.add_argument(
        "--ttl", type=_positive_seconds, default=3600, metavar="SECONDS", help="default 3600"
    )
    token.add_argument(
        "--issuer",
        default=DEFAULT_ISSUER,
        help=f"iss (default {DEFAULT_ISSUER}; ONNET_AUTH_ISSUER)",
    )
    token.add_argument(
        "--audience",
        default=DEFAULT_AUDIENCE,
        help=f"aud (default {DEFAULT_AUDIENCE}; ONNET_AUTH_AUDIENCE)",
    )
    token.set_defaults(run=_token, target=None)


def _dev_certs(args: argparse.Namespace) -> int:
    from onnet_server.commands.dev_certs import make_dev_certs  # noqa: PLC0415

    hosts = tuple(args.host) if args.host else ("localhost", "127.0.0.1")
    try:
        made = make_dev_certs(args.directory, hosts=hosts, days=args.days, overwrite=args.force)
    except FileExistsError as exc:
        fail(f"{exc.filename or exc} exists; pass --force to overwrite")
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        fail(f"cannot make certificates in {args.directory}: {exc}")
        return EXIT_USAGE
    print(f"wrote a development CA and certificates to {args.directory} (development only)")
    print(f"  server:  --tls-cert {made.server_cert} --tls-key {made.server_key}")
    print(f"  mutual:  --tls-client-ca {made.ca_cert}")
    print(f"  clients: ONNET_TLS_CA={made.ca_cert}")
    print(f"  service: ONNET_TLS_CLIENT_CERT={made.service_cert} ONNET_TLS_CLIENT_KEY=...")
    return EXIT_OK


def _signing_key(args: argparse.Namespace) -> int:
    from onnet.protocol import (  # noqa: PLC0415
        load_signing_key,
        new_signing_key_pem,
        public_jwks,
    )

    public_path = args.file.with_name(args.file.name + ".jwks")
    try:
        if public_path.exists():
            raise FileExistsError(public_path)
        descriptor = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(new_signing_key_pem())
        public_key = load_signing_key(args.file).public_key()
        # Public, but whoever can write it can mint credentials: owner-writable, created
        # here, never through a link planted in its place.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(public_path, flags, 0o644), "w") as jwks:
            jwks.write(json.dumps(public_jwks(public_key), indent=2) + "\n")
    except FileExistsError as exc:
        fail(f"{exc.filename or exc} exists; refusing to overwrite a key")
        return EXIT_USAGE
    except OSError as exc:
        fail(f"cannot write {args.file}: {exc.strerror}")
        return EXIT_USAGE
    print(f"wrote the signing key {args.file} (keep it with whoever issues credentials)")
    print(f"and its public JWKS {public_path}: set ONNET_AUTH_JWKS={public_path}")
    return EXIT_OK


def _positive_seconds(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("a token must live at least one second")
    return seconds


def _token(args: argparse.Namespace) -> int:
    from onnet.protocol import KeyFileError, issue_token, load_signing_key  # noqa: PLC0415

    try:
        key = load_signing_key(args.signing_key)
        print(
            issue_token(
                key, args.subject, args.kind, args.ttl, issuer=args.issuer, audience=args.audience
            )
        )
    except (KeyFileError, ValueError) as exc:
        fail(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        fail(f"cannot read {args.signing_key}: {exc.strerror}")
        return EXIT_USAGE
    return EXIT_OK
