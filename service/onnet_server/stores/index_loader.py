"""Loading the registry from Redis in a child process, so that the load's garbage dies with it.

A load from Redis makes Python objects for every record it reads (keys, values, ids) a
chunk at a time. They are freed, but the allocator cannot give back the memory they
fragmented: a process that loaded 1,000,000 users kept about 25 MB more than one that
mapped the same base file (bench/README.md). So the process that builds the host's first
base does not load Redis itself: it runs this module as a child, which loads the registry,
writes the base file into the host's index directory, and exits; the server then maps the
file and catches up from the change streams, as any other process of the host does.

The child is told where Redis is and where the base goes by its environment (never on its
command line, which other users of the machine can read): ``ONNET_REDIS_URL`` or
``ONNET_REDIS_CLUSTER``, ``ONNET_REDIS_PREFIX`` and ``ONNET_INDEX_DIR``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

__all__ = ["ChildLoader", "main"]

_log = logging.getLogger(__name__)

# The child's exit codes.
_LOADED = 0
_FAILED = 1


class ChildLoader:
    """Runs the load of the host's first base in a child process (see the module doc)."""

    def __init__(self, redis_url: str | None, redis_cluster: str | None, prefix: str) -> None:
        """Load the registry under ``prefix`` from ``redis_url`` or ``redis_cluster``."""
        self._env = {
            "ONNET_REDIS_URL": redis_url or "",
            "ONNET_REDIS_CLUSTER": redis_cluster or "",
            "ONNET_REDIS_PREFIX": prefix,
        }

    async def __call__(self, directory: Path) -> bool:
        """Load into a base file in ``directory``; True once the child has published one."""
        env = {**os.environ, **self._env, "ONNET_INDEX_DIR": str(directory)}
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "onnet_server.stores.index_loader", env=env
        )
        try:
            code = await child.wait()
        except asyncio.CancelledError:
            child.kill()
            await child.wait()
            raise
        if code != _LOADED:
            _log.warning("the index loader process failed (exit code %d); loading here", code)
        return code == _LOADED


async def _load(
    redis_url: str | None, redis_cluster: str | None, prefix: str, directory: Path
) -> None:
    # Imported here: the parent imports this module for ChildLoader only.
    from onnet_server.stores.redis_connection import RedisClient, connect_and_run  # noqa: PLC0415
    from onnet_server.stores.redis_layout import Layout  # noqa: PLC0415
    from onnet_server.stores.redis_store import RedisRegistry  # noqa: PLC0415

    async def load(client: RedisClient) -> None:
        store = RedisRegistry(client, layout=Layout(prefix), index_dir=directory)
        try:
            await store.load_for_host()
        finally:
            await store.close()

    await connect_and_run(redis_url, redis_cluster, load)


def main() -> int:
    """The child's entry point: load, publish, exit (0 once the base file is published)."""
    from onnet_server.logs import configure_logging  # noqa: PLC0415

    configure_logging(
        os.environ.get("ONNET_LOG_LEVEL", "INFO"), os.environ.get("ONNET_LOG_FORMAT", "text")
    )
    directory = os.environ.get("ONNET_INDEX_DIR")
    prefix = os.environ.get("ONNET_REDIS_PREFIX", "")
    if not directory or not prefix:
        _log.error("the index loader needs ONNET_INDEX_DIR and ONNET_REDIS_PREFIX")
        return _FAILED
    try:
        asyncio.run(
            _load(
                os.environ.get("ONNET_REDIS_URL") or None,
                os.environ.get("ONNET_REDIS_CLUSTER") or None,
                prefix,
                Path(directory),
            )
        )
    except Exception as error:
        _log.error("the index loader failed: %s", type(error).__name__)
        return _FAILED
    return _LOADED


if __name__ == "__main__":
    sys.exit(main())
