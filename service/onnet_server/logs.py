"""Logging set-up for the server. What may be logged: counts, durations, outcomes, key ids.

Never a phone number, a contact hash, a token, a blinded element or a user id: the servicers
and the core are written so that none of these reaches a log call, and a test proves it.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]


def configure_logging(level: str) -> None:
    """Log to standard error at ``level`` (a logging level name such as "INFO")."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # gRPC's own debug chatter (event-loop bookkeeping) would drown onnet's lines.
    logging.getLogger("grpc").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("asyncio").setLevel(max(logging.getLevelName(level), logging.INFO))
