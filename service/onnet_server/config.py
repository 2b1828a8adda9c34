"""Server configuration: one frozen dataclass, read from the environment by ``from_env``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ConfigError", "ServerConfig"]

_ENV_PREFIX = "ONNET_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_MAX_MESSAGE_LIMIT = 2**31 - 1  # gRPC's limit options are signed 32-bit integers


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``onnet serve`` can be told. Each field has an ONNET_* variable."""

    listen: str = "127.0.0.1:50051"
    """Address to serve on, HOST:PORT (ONNET_LISTEN); port 0 picks a free one."""
    max_batch: int = 10_000
    """Most contact hashes in one Discover call (ONNET_MAX_BATCH)."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest request message the transport accepts (ONNET_MAX_MESSAGE_BYTES)."""
    pepper_file: Path | None = None
    """File holding the 32-byte pepper as 64 hex digits (ONNET_PEPPER_FILE)."""
    pepper_hex: str | None = field(default=None, repr=False)
    """The pepper itself as 64 hex digits (ONNET_PEPPER); kept out of repr."""
    pepper_id: str | None = None
    """Id of the pepper (ONNET_PEPPER_ID); derived from the key when unset."""
    redis_url: str | None = field(default=None, repr=False)
    """Redis to keep the registry in, e.g. redis://127.0.0.1:6379/0 (ONNET_REDIS_URL); kept
    out of repr since it may hold a password. Unset with no cluster: the in-memory store."""
    redis_cluster: str | None = None
    """Redis Cluster seed nodes, HOST:PORT[,HOST:PORT...] (ONNET_REDIS_CLUSTER)."""
    log_level: str = "INFO"
    """Python logging level name (ONNET_LOG_LEVEL)."""
    shutdown_grace: float = 10.0
    """Seconds that in-flight calls get to finish on SIGTERM or SIGINT (ONNET_SHUTDOWN_GRACE)."""

    def __post_init__(self) -> None:
        """Reject values that cannot work, naming the variable."""
        if not 1 <= self.max_batch <= 1_000_000:
            raise ConfigError("ONNET_MAX_BATCH must be between 1 and 1000000")
        # Room for a full batch in `hashes` and again in `previous_hashes`, plus framing.
        needed = 2 * self.max_batch * 32 + 1024
        if self.max_message_bytes < needed:
            raise ConfigError(
                f"ONNET_MAX_MESSAGE_BYTES must be at least {needed} for a batch of {self.max_batch}"
            )
        if self.max_message_bytes > _MAX_MESSAGE_LIMIT:
            raise ConfigError(f"ONNET_MAX_MESSAGE_BYTES must be at most {_MAX_MESSAGE_LIMIT}")
        if not math.isfinite(self.shutdown_grace) or self.shutdown_grace < 0:
            raise ConfigError("ONNET_SHUTDOWN_GRACE must be a finite, non-negative number")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"ONNET_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        if self.redis_url and self.redis_cluster:
            raise ConfigError("set ONNET_REDIS_URL or ONNET_REDIS_CLUSTER, not both")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("ONNET_REDIS_URL must start with redis://, rediss:// or unix://")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerConfig:
        """Build the configuration from ONNET_* variables (``os.environ`` by default)."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(_ENV_PREFIX + name)
            return value if value else None

        def number(name: str, default: int) -> int:
            text = get(name)
            if text is None:
                return default
            try:
                return int(text)
            except ValueError:
                raise ConfigError(f"{_ENV_PREFIX}{name} must be a whole number") from None

        grace_text = get("SHUTDOWN_GRACE")
        try:
            grace = float(grace_text) if grace_text is not None else cls.shutdown_grace
        except ValueError:
            raise ConfigError("ONNET_SHUTDOWN_GRACE must be a number of seconds") from None
        pepper_file = get("PEPPER_FILE")
        return cls(
            listen=get("LISTEN") or cls.listen,
            max_batch=number("MAX_BATCH", cls.max_batch),
            max_message_bytes=number("MAX_MESSAGE_BYTES", cls.max_message_bytes),
            pepper_file=Path(pepper_file) if pepper_file else None,
            pepper_hex=get("PEPPER"),
            pepper_id=get("PEPPER_ID"),
            redis_url=get("REDIS_URL"),
            redis_cluster=get("REDIS_CLUSTER"),
            log_level=(get("LOG_LEVEL") or cls.log_level).upper(),
            shutdown_grace=grace,
        )
