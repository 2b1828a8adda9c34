"""Logging set-up for the server. What may be logged: counts, durations, outcomes, key ids.

Never a phone number, a contact hash, a token, a blinded element or a user id: the servicers
and the core are written so that none of these reaches a log call, and a test proves it.

Libraries are not written that way. gRPC's Python layer logs a request header it cannot
decode, value and all (a credential, at ERROR), and its C core prints every header when
tracing is on. So the server withholds the arguments and tracebacks of gRPC's own records,
keeping only their fixed text, and switches the C core's tracing off before it starts.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["SILENCED", "WithholdLibraryDetails", "configure_logging", "silence_grpc_core"]

SILENCED = "ONNET_SILENCED_GRPC_SETTINGS"
"""Names the gRPC settings a server switched off before it started again (for its log)."""

# Records of these loggers keep their fixed message and lose their arguments and traceback:
# gRPC's quote request headers; asyncio's quote the exceptions of tasks gRPC runs, which
# carried a request's raw :path when gRPC's accept loop failed on it.
_LIBRARY_LOGGERS = ("grpc", "asyncio")
# The C core reads these when it starts: tracing prints headers, and debug verbosity
# prints more than errors.
_CORE_TRACING = "GRPC_TRACE"
_CORE_VERBOSITY = "GRPC_VERBOSITY"


class WithholdLibraryDetails(logging.Filter):
    """Keeps a library record's message template; drops its arguments and its traceback.

    gRPC formats header values into its messages (``Invalid encoding on %s``) and attaches
    tracebacks whose text quotes them; the template alone says what happened.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite records of gRPC's loggers in place; let every record through."""
        if record.name.split(".", 1)[0] in _LIBRARY_LOGGERS and (
            record.args or record.exc_info or record.exc_text or record.stack_info
        ):
            template = str(record.msg).replace("%s", "<withheld>").replace("%r", "<withheld>")
            record.msg = f"{template} (details withheld: they may quote request headers)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


def silence_grpc_core() -> list[str]:
    """Switch off the gRPC C core's tracing and debug output; returns what was switched off.

    The core reads these settings once, when grpc is first imported: a process that finds
    any of them switched on must start again for this to take effect (``onnet serve`` does).
    """
    dropped = []
    if os.environ.pop(_CORE_TRACING, None):
        dropped.append(_CORE_TRACING)
    if os.environ.get(_CORE_VERBOSITY, "").upper() not in ("", "ERROR", "NONE"):
        os.environ[_CORE_VERBOSITY] = "ERROR"
        dropped.append(_CORE_VERBOSITY)
    return dropped


def configure_logging(level: str) -> None:
    """Log to standard error at ``level`` (a logging level name such as "INFO")."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(WithholdLibraryDetails())
    # gRPC's own debug chatter (event-loop bookkeeping) would drown onnet's lines.
    logging.getLogger("grpc").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("asyncio").setLevel(max(logging.getLevelName(level), logging.INFO))
