"""Logging set-up for the server. What may be logged: counts, durations, outcomes, key ids.

Never a phone number, a contact hash, a token, a blinded element or a user id: the servicers
and the core are written so that none of these reaches a log call, and a test proves it.

Libraries are not written that way. gRPC's Python layer logs a request header it cannot
decode, value and all (a credential, at ERROR), and its C core prints every header when
tracing is on. So the server withholds the arguments and tracebacks of gRPC's own records,
keeping only their fixed text, and switches the C core's tracing off before it starts.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

__all__ = [
    "LOG_FORMATS",
    "SILENCED",
    "JsonLines",
    "WithholdLibraryDetails",
    "configure_logging",
    "silence_grpc_core",
]

LOG_FORMATS = ("text", "json")
"""What ``--log-format`` (ONNET_LOG_FORMAT) accepts; text is the default."""

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


# What every LogRecord has; anything else on a record came from a call's ``extra=``: the
# event's own fields.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonLines(logging.Formatter):
    """One JSON object per record and line: time, level, logger, message, the event's fields.

    ``time`` is RFC 3339 in UTC with milliseconds. The event's fields are those a log call
    passes as ``extra`` (``_log.info("...", extra={"port": 50051})``), each a key of its own
    (a field named like one of the four is prefixed ``field_``), so that a log pipeline reads
    them without patterns. A traceback, when the record has one, is ``exception``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        seconds = time.gmtime(record.created)
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                line[f"field_{name}" if name in line else name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to standard error at ``level`` (a logging level name such as "INFO").

    ``log_format`` is "text" (a line of prose a record) or "json" (``JsonLines``).
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"the log format must be one of {', '.join(LOG_FORMATS)}")
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(WithholdLibraryDetails())
        if log_format == "json":
            handler.setFormatter(JsonLines())
    # gRPC's own debug chatter (event-loop bookkeeping) would drown onnet's lines.
    logging.getLogger("grpc").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("asyncio").setLevel(max(logging.getLevelName(level), logging.INFO))
