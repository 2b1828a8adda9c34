"""The ``onnet`` commands that work on a Redis registry directly: the pepper rotation's steps.

They talk to Redis, not to a server, and need the same settings a server has (Redis, the
peppers), read from the same ONNET_* variables or the flags.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from onnet_server.commands.common import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    fail,
    redis_url_argument,
)
from onnet_server.config import ConfigError
from onnet_server.pepper import read_pepper_file
from onnet_server.stores.redis_connection import STORE_DOWN, RedisClient, connect, describe
from onnet_server.stores.redis_layout import Layout

__all__ = ["add_admin_commands"]

_Result = TypeVar("_Result")


def add_admin_commands(commands: Any) -> None:  # noqa: ANN401 - argparse's subparsers action
    """Add ``move-blocklists`` and ``drop-registry`` to the ``onnet`` command."""
    move = commands.add_parser(
        "move-blocklists",
        help="pepper rotation: copy blocklists to the new prefix, re-keyed",
        description="Copy every user's blocklist from the registry under --from-prefix "
        "(fingerprints under ONNET_PREVIOUS_PEPPER_FILE) to the one under --to-prefix "
        "(under ONNET_PEPPER_FILE). Run it after the users were re-imported; running it "
        "again only adds. Each pepper must be the one its prefix was built with.",
    )
    _redis_arguments(move)
    move.add_argument("--from-prefix", required=True, metavar="PREFIX")
    move.add_argument("--to-prefix", required=True, metavar="PREFIX")
    move.add_argument("--pepper-file", type=Path, metavar="FILE", help="$ONNET_PEPPER_FILE")
    move.add_argument(
        "--previous-pepper-file",
        type=Path,
        metavar="FILE",
        help="$ONNET_PREVIOUS_PEPPER_FILE",
    )
    move.set_defaults(run=_move_blocklists, target=None)

    drop = commands.add_parser(
        "drop-registry",
        help="pepper rotation: delete the old registry's keys",
        description="Delete every key of the registry under --prefix (users, blocklists, "
        "change streams, the record of its pepper). Quota buckets stay. Stop the servers of "
        "that prefix first.",
    )
    _redis_arguments(drop)
    drop.add_argument("--prefix", required=True, metavar="PREFIX")
    drop.add_argument("--yes", action="store_true", help="really delete")
    drop.set_defaults(run=_drop_registry, target=None)


def _redis_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", metavar="URL", type=redis_url_argument, help="$ONNET_REDIS_URL")
    parser.add_argument("--redis-cluster", metavar="HOST:PORT[,...]", help="$ONNET_REDIS_CLUSTER")


def _path(value: Path | None, variable: str) -> Path:
    text = value or os.environ.get(variable)
    if not text:
        raise ConfigError(f"set {variable} (or its flag)")
    return Path(text)


def _with_redis(
    args: argparse.Namespace, work: Callable[[RedisClient], Awaitable[_Result]]
) -> _Result | None:
    url = args.redis or os.environ.get("ONNET_REDIS_URL")
    cluster = args.redis_cluster or os.environ.get("ONNET_REDIS_CLUSTER")
    if not (url or cluster):
        raise ConfigError("set ONNET_REDIS_URL or ONNET_REDIS_CLUSTER (or --redis)")

    async def run() -> _Result:
        client = connect(url, cluster)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except STORE_DOWN as error:
        fail(f"cannot reach {describe(url, cluster)}: {type(error).__name__}")
        return None


def _move_blocklists(args: argparse.Namespace) -> int:
    from onnet_server.commands.rotation import move_blocklists  # noqa: PLC0415

    new = read_pepper_file(_path(args.pepper_file, "ONNET_PEPPER_FILE"), "ONNET_PEPPER_FILE")
    old = read_pepper_file(
        _path(args.previous_pepper_file, "ONNET_PREVIOUS_PEPPER_FILE"),
        "ONNET_PREVIOUS_PEPPER_FILE",
    )
    try:
        source, target = Layout(args.from_prefix), Layout(args.to_prefix)
        moved = _with_redis(args, lambda client: move_blocklists(client, source, target, old, new))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if moved is None:
        return EXIT_UNREACHABLE
    print(
        f"moved {moved.blocks} blocks of {moved.users} users to prefix {args.to_prefix}; "
        f"{moved.users_missing} users not registered there yet"
    )
    return EXIT_OK


def _drop_registry(args: argparse.Namespace) -> int:
    from onnet_server.commands.rotation import drop_registry  # noqa: PLC0415

    if not args.yes:
        fail(f"this deletes the registry under prefix {args.prefix}; add --yes to do it")
        return EXIT_USAGE
    layout = Layout(args.prefix)
    deleted = _with_redis(args, lambda client: drop_registry(client, layout))
    if deleted is None:
        return EXIT_UNREACHABLE
    print(f"deleted {deleted} keys under prefix {args.prefix}")
    return EXIT_OK
