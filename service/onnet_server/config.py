"""Server configuration: one frozen dataclass, read from the environment by ``from_env``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from onnet.protocol import (
    CONTACT_HASH_SIZE,
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DEFAULT_MAX_LIFETIME,
    JWT_ALGORITHMS,
    KIND_CLAIM,
    MESSAGE_OVERHEAD_BYTES,
)
from onnet_server.core.quota import QuotaPolicy

__all__ = ["ConfigError", "ServeSettings"]

_ENV_PREFIX = "ONNET_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")  # onnet_server.logs.LOG_FORMATS: config imports no logging set-up
_MAX_MESSAGE_LIMIT = 2**31 - 1  # gRPC's limit options are signed 32-bit integers
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_PREFIX_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_TRUE = frozenset({"1", "true", "yes", "on"})
# Variables that no longer do anything, and what replaced them: refused, not ignored.
_RETIRED = {
    "AUTH_PUBLIC_KEYS": "credentials are JSON Web Tokens now: give ONNET_AUTH_JWKS, a JWKS "
    "file (`onnet signing-key FILE` writes FILE.jwks)",
}
# Fields whose variable is not simply the field's name in capitals.
_ENV_NAMES = {"pepper_hex": "PEPPER", "dev_mode": "DEV"}


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``onnet serve`` can be told. Each field has an ONNET_* variable."""

    listen: str = "127.0.0.1:50051"
    """Address to serve on, HOST:PORT (ONNET_LISTEN); port 0 picks a free one."""
    max_batch: int = 10_000
    """Most contact hashes in one Discover call (ONNET_MAX_BATCH)."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest request message the transport accepts (ONNET_MAX_MESSAGE_BYTES)."""
    pepper_file: Path | None = None
    """File holding the 32-byte pepper as 64 hex digits (ONNET_PEPPER_FILE). This or
    ``pepper_hex`` is required outside development mode."""
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
    log_format: str = "text"
    """``text`` (a line of prose a record) or ``json`` (one JSON object a line: time, level,
    logger, message and the event's fields) (ONNET_LOG_FORMAT)."""
    shutdown_grace: float = 10.0
    """Seconds that in-flight calls get to finish on SIGTERM or SIGINT (ONNET_SHUTDOWN_GRACE)."""
    dev_mode: bool = False
    """Development mode (ONNET_DEV=1, ``--dev``): calls without a credential are let through
    as the caller "dev". Only on the embedded store and a loopback address."""
    auth_jwks: Path | None = None
    """JWKS file (RFC 7517) of the public keys that sign credentials (ONNET_AUTH_JWKS). This
    or ``auth_jwks_url`` is required unless in development mode."""
    auth_jwks_url: str | None = None
    """URL of the issuer's JWKS (ONNET_AUTH_JWKS_URL), fetched at start and every
    ``auth_jwks_refresh`` seconds; a failed fetch keeps the last good keys."""
    auth_jwks_refresh: float = 300.0
    """Seconds between fetches of ONNET_AUTH_JWKS_URL (ONNET_AUTH_JWKS_REFRESH)."""
    auth_issuer: str = DEFAULT_ISSUER
    """The ``iss`` every credential must carry (ONNET_AUTH_ISSUER)."""
    auth_audience: str = DEFAULT_AUDIENCE
    """The ``aud`` every credential must carry (ONNET_AUTH_AUDIENCE)."""
    auth_algorithms: tuple[str, ...] = ("EdDSA",)
    """The JWS algorithms credentials may use (ONNET_AUTH_ALGORITHMS, comma-separated: some
    of EdDSA, ES256, RS256); any other, and ``none``, is refused."""
    auth_kind_claim: str = KIND_CLAIM
    """The claim that says ``account`` or ``service`` (ONNET_AUTH_KIND_CLAIM)."""
    service_cert_names: tuple[str, ...] = ()
    """Client-certificate common names trusted as services on the Registry without a token
    (ONNET_SERVICE_CERT_NAMES, comma-separated; needs ONNET_TLS_CLIENT_CA)."""
    tls_cert: Path | None = None
    """Server certificate chain, PEM (ONNET_TLS_CERT); unset serves plaintext."""
    tls_key: Path | None = None
    """Server private key, PEM (ONNET_TLS_KEY)."""
    tls_client_ca: Path | None = None
    """CA whose client certificates are required (ONNET_TLS_CLIENT_CA): mutual TLS."""
    quota_new_numbers: int = 20_000
    """New numbers an account may look up per quota period (ONNET_QUOTA_NEW_NUMBERS)."""
    quota_period: float = 864_000.0
    """Seconds in which a spent quota refills completely (ONNET_QUOTA_PERIOD; 10 days)."""
    resync_token_ttl: int = 90 * 86_400
    """Seconds a re-sync token stays valid (ONNET_RESYNC_TOKEN_TTL; 90 days). Every sync
    returns a fresh one, so only an account idle that long pays again."""
    previous_pepper_file: Path | None = None
    """The pepper before the last rotation (ONNET_PREVIOUS_PEPPER_FILE): re-sync tokens
    issued under it stay valid, so a rotation does not make every client pay again."""
    metrics_listen: str | None = None
    """Serve Prometheus metrics over HTTP at HOST:PORT (ONNET_METRICS_LISTEN); unset: none.
    With several workers, worker i listens on PORT + i."""
    import_processes: int = 0
    """Processes that prepare ImportUsers rows (validation, private-mode entries;
    ONNET_IMPORT_PROCESSES): 0 for one per core, started by the first large import; 1 for a
    thread of the server itself."""
    lookup_thread: bool = True
    """Run Discover's index probes on a thread of their own, off the event loop's core
    (ONNET_LOOKUP_THREAD, default on; 0 probes on the event loop, in line)."""
    workers: int = 1
    """Server processes sharing the port with SO_REUSEPORT (ONNET_WORKERS, ``--workers``);
    more than one needs Redis, which keeps every worker's index current."""
    reuse_port: bool = False
    """Share the port with other processes (SO_REUSEPORT; ONNET_REUSE_PORT): set by
    ``--workers`` for its worker processes, not by hand."""
    bench_ceiling: bool = False
    """Serve onnet.v1.Bench/Ceiling, a Discover that does no work, for load tests to measure
    the framework's ceiling against (ONNET_BENCH_CEILING=1, ``--bench-ceiling``)."""
    redis_prefix: str = "onnet"
    """Prefix of the registry's Redis keys (ONNET_REDIS_PREFIX); a pepper rotation imports
    into a new prefix while the old one serves."""
    index_dir: Path | None = None
    """Directory of the host's index base files (ONNET_INDEX_DIR): the processes of a host
    share one base (one copy in memory), and a process starting with the registry's newest
    base there serves at once, catching up from the change streams. Unset: each process
    keeps its bases in its own memory (``--workers`` then makes a private directory)."""
    index_rebuild_changes: int = 50_000
    """Changes since the index's base that start a new base (ONNET_INDEX_REBUILD_CHANGES;
    or a sixteenth of the base's users, if more)."""
    index_max_age: float = 600.0
    """Seconds after which waiting changes get a new base anyway (ONNET_INDEX_MAX_AGE): an
    erased user's record leaves the base (and the host's base file) within this time."""
    max_credential_lifetime: int = DEFAULT_MAX_LIFETIME
    """Longest lifetime (expiry minus issue time, seconds) of a credential the server
    accepts (ONNET_MAX_CREDENTIAL_LIFETIME; one hour): a stolen credential expires soon."""
    account_calls: int = 60
    """Calls an account may make in a burst (ONNET_ACCOUNT_CALLS); 0 switches the per-account
    call rate off (load tests against one shared credential)."""
    account_calls_period: float = 60.0
    """Seconds in which an account's spent calls come back (ONNET_ACCOUNT_CALLS_PERIOD)."""
    account_concurrent_calls: int = 8
    """Calls of one account in flight at once (ONNET_ACCOUNT_CONCURRENT_CALLS); 0 switches
    the limit off."""
    receive_timeout: float = 30.0
    """Seconds a call's request message may take to arrive (ONNET_RECEIVE_TIMEOUT): a client
    that trickles its upload holds a call slot no longer (1 MB at 35 KB/s by default)."""
    max_concurrent_calls: int = 100
    """Calls the process handles at once; more are refused at once with RESOURCE_EXHAUSTED
    (ONNET_MAX_CONCURRENT_CALLS). With ``max_message_bytes`` it bounds the memory that
    request messages can hold (README, "Memory budget")."""
    max_connection_age: float = 300.0
    """Seconds a client connection lives before the server asks it to reconnect
    (ONNET_MAX_CONNECTION_AGE); its calls then get ONNET_RECEIVE_TIMEOUT more to end. Bounds
    how long calls whose answers a client never reads can hold their slots."""
    memory_limit: int = 0
    """Anonymous memory (MiB) past which the process exits (code 70) for its supervisor to
    restart it (ONNET_MEMORY_LIMIT; 0: no limit). A last defence against memory that gRPC's
    C core keeps and onnet cannot bound (README, "Memory budget"). The index's base file,
    mapped, does not count."""
    allow_plaintext: bool = False
    """Serve plaintext on an address that is not loopback (ONNET_ALLOW_PLAINTEXT=1,
    ``--allow-plaintext``): only behind a mesh or proxy that terminates TLS."""

    def __post_init__(self) -> None:
        """Reject values that cannot work, naming the variable."""
        if not 1 <= self.max_batch <= 1_000_000:
            raise ConfigError("ONNET_MAX_BATCH must be between 1 and 1000000")
        # Room for a full batch in `hashes` and again in `previous_hashes`, plus framing.
        needed = 2 * self.max_batch * CONTACT_HASH_SIZE + MESSAGE_OVERHEAD_BYTES
        if self.max_message_bytes < needed:
            raise ConfigError(
                f"ONNET_MAX_MESSAGE_BYTES must be at least {needed} for a batch of {self.max_batch}"
            )
        if self.max_message_bytes > _MAX_MESSAGE_LIMIT:
            raise ConfigError(f"ONNET_MAX_MESSAGE_BYTES must be at most {_MAX_MESSAGE_LIMIT}")
        if not math.isfinite(self.shutdown_grace) or self.shutdown_grace < 0:
            raise ConfigError("ONNET_SHUTDOWN_GRACE must be a finite, non-negative number")
        self._check_logging()
        if self.redis_url and self.redis_cluster:
            raise ConfigError("set ONNET_REDIS_URL or ONNET_REDIS_CLUSTER, not both")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("ONNET_REDIS_URL must start with redis://, rediss:// or unix://")
        self._check_limits()
        self._check_credentials()
        self._check_security()
        self._check_processes()
        if self.quota_new_numbers < 1:
            raise ConfigError("ONNET_QUOTA_NEW_NUMBERS must be at least 1")
        if not math.isfinite(self.quota_period) or self.quota_period <= 0:
            raise ConfigError("ONNET_QUOTA_PERIOD must be a positive number of seconds")
        try:
            QuotaPolicy(self.quota_new_numbers, self.quota_period)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"ONNET_QUOTA_NEW_NUMBERS / ONNET_QUOTA_PERIOD: {error}") from None
        if self.resync_token_ttl < 1:
            raise ConfigError("ONNET_RESYNC_TOKEN_TTL must be at least 1 second")
        if not self.redis_prefix or not set(self.redis_prefix) <= _PREFIX_CHARACTERS:
            raise ConfigError("ONNET_REDIS_PREFIX must be letters, digits, '-' or '_'")

    def _check_limits(self) -> None:
        """The hostile-client limits must be usable numbers."""
        if self.index_rebuild_changes < 1:
            raise ConfigError("ONNET_INDEX_REBUILD_CHANGES must be at least 1")
        if not math.isfinite(self.index_max_age) or self.index_max_age <= 0:
            raise ConfigError("ONNET_INDEX_MAX_AGE must be a positive number of seconds")
        if self.max_credential_lifetime < 1:
            raise ConfigError("ONNET_MAX_CREDENTIAL_LIFETIME must be at least 1 second")
        if self.account_calls < 0:
            raise ConfigError("ONNET_ACCOUNT_CALLS must be 0 (no limit) or more")
        if self.account_concurrent_calls < 0:
            raise ConfigError("ONNET_ACCOUNT_CONCURRENT_CALLS must be 0 (no limit) or more")
        if not math.isfinite(self.account_calls_period) or self.account_calls_period <= 0:
            raise ConfigError("ONNET_ACCOUNT_CALLS_PERIOD must be a positive number of seconds")
        if not math.isfinite(self.receive_timeout) or self.receive_timeout <= 0:
            raise ConfigError("ONNET_RECEIVE_TIMEOUT must be a positive number of seconds")
        if not math.isfinite(self.max_connection_age) or self.max_connection_age < 1:
            raise ConfigError("ONNET_MAX_CONNECTION_AGE must be at least 1 second")
        if self.memory_limit < 0:
            raise ConfigError("ONNET_MEMORY_LIMIT must be 0 (no limit) or a number of MiB")
        if not 1 <= self.max_concurrent_calls <= 100_000:
            raise ConfigError("ONNET_MAX_CONCURRENT_CALLS must be between 1 and 100000")

    def _check_logging(self) -> None:
        """The log level and format must be ones the logging set-up knows."""
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"ONNET_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"ONNET_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")

    def _check_credentials(self) -> None:
        """What a credential must say, and where its keys come from, must be usable."""
        if not math.isfinite(self.auth_jwks_refresh) or self.auth_jwks_refresh < 1:
            raise ConfigError("ONNET_AUTH_JWKS_REFRESH must be at least 1 second")
        unknown = set(self.auth_algorithms) - set(JWT_ALGORITHMS)
        if not self.auth_algorithms or unknown:
            raise ConfigError(
                "ONNET_AUTH_ALGORITHMS must be some of "
                f"{', '.join(JWT_ALGORITHMS)}, comma-separated"
            )
        if not self.auth_issuer or not self.auth_audience or not self.auth_kind_claim:
            raise ConfigError(
                "ONNET_AUTH_ISSUER, ONNET_AUTH_AUDIENCE and ONNET_AUTH_KIND_CLAIM must not be empty"
            )

    def _check_processes(self) -> None:
        """Several workers need a shared store and a port they can all bind."""
        if not 0 <= self.import_processes <= 256:
            raise ConfigError("ONNET_IMPORT_PROCESSES must be between 0 (one per core) and 256")
        if not 1 <= self.workers <= 64:
            raise ConfigError("ONNET_WORKERS must be between 1 and 64")
        if self.workers > 1:
            if not (self.redis_url or self.redis_cluster):
                raise ConfigError(
                    "ONNET_WORKERS above 1 needs Redis (ONNET_REDIS_URL or ONNET_REDIS_CLUSTER): "
                    "each worker keeps its own index, and only Redis keeps them all current"
                )
            if self.listen.rsplit(":", 1)[-1] == "0":
                raise ConfigError("ONNET_WORKERS above 1 needs a fixed port in ONNET_LISTEN")
        if self.metrics_listen is not None:
            host, _, port = self.metrics_listen.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError("ONNET_METRICS_LISTEN must be HOST:PORT")

    def _check_security(self) -> None:
        """Credentials, TLS and development mode must make a coherent whole."""
        if self.dev_mode:
            if self.redis_url or self.redis_cluster:
                raise ConfigError(
                    "development mode (--dev) runs only on the embedded store; to serve from "
                    "Redis, drop --dev and give a pepper (ONNET_PEPPER_FILE) and the credential "
                    "issuer's public keys (ONNET_AUTH_JWKS or ONNET_AUTH_JWKS_URL): see the "
                    "README's "
                    '"Running it for real"'
                )
            if not _is_loopback(self.listen):
                raise ConfigError("development mode (--dev) listens only on a loopback address")
        elif self.auth_jwks is None and self.auth_jwks_url is None:
            raise ConfigError(
                "set ONNET_AUTH_JWKS (a JWKS file of the public keys that sign credentials: "
                "make one with `onnet signing-key FILE`) or ONNET_AUTH_JWKS_URL (your identity "
                "provider's), or pass --dev for a local try-out on the embedded store"
            )
        elif self.pepper_file is None and self.pepper_hex is None:
            # An ephemeral pepper would key a registry that nobody can find after a restart,
            # and workers or fleets would each make their own: only a try-out may have one.
            raise ConfigError(
                "set ONNET_PEPPER_FILE (make one with `onnet new-pepper FILE`) or ONNET_PEPPER: "
                "the registry is keyed by its pepper; or pass --dev for a local try-out"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(
                "give the certificate and its key together: ONNET_TLS_CERT and ONNET_TLS_KEY"
            )
        if self.tls_cert is None and not self.allow_plaintext and not _is_loopback(self.listen):
            raise ConfigError(
                "plaintext beyond loopback: give ONNET_TLS_CERT and ONNET_TLS_KEY, or, behind "
                "a mesh or proxy that terminates TLS, ONNET_ALLOW_PLAINTEXT=1"
            )
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("ONNET_TLS_CLIENT_CA needs ONNET_TLS_CERT and ONNET_TLS_KEY")
        if self.service_cert_names and self.tls_client_ca is None:
            raise ConfigError("ONNET_SERVICE_CERT_NAMES needs ONNET_TLS_CLIENT_CA (mutual TLS)")

    def to_env(self) -> dict[str, str]:
        """The ONNET_* variables that ``from_env`` reads back into this configuration."""
        env: dict[str, str] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None or value == () or value is False:
                continue
            name = _ENV_NAMES.get(item.name, item.name.upper())
            if isinstance(value, tuple):
                env[_ENV_PREFIX + name] = ",".join(value)
            elif value is True:
                env[_ENV_PREFIX + name] = "1"
            else:
                env[_ENV_PREFIX + name] = str(value)
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ServeSettings:
        """Build the configuration from ONNET_* variables (``os.environ`` by default).

        ``overrides`` (command-line flags) win over the variables; the whole is checked once.
        """
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

        def seconds(name: str, default: float) -> float:
            text = get(name)
            try:
                return float(text) if text is not None else default
            except ValueError:
                raise ConfigError(f"{_ENV_PREFIX}{name} must be a number of seconds") from None

        def path(name: str) -> Path | None:
            text = get(name)
            return Path(text) if text else None

        for retired, instead in _RETIRED.items():
            if get(retired) is not None:
                raise ConfigError(f"{_ENV_PREFIX}{retired} is retired: {instead}")
        names = get("SERVICE_CERT_NAMES")
        algorithms = get("AUTH_ALGORITHMS")
        values: dict[str, object] = dict(
            listen=get("LISTEN") or cls.listen,
            max_batch=number("MAX_BATCH", cls.max_batch),
            max_message_bytes=number("MAX_MESSAGE_BYTES", cls.max_message_bytes),
            pepper_file=path("PEPPER_FILE"),
            pepper_hex=get("PEPPER"),
            pepper_id=get("PEPPER_ID"),
            redis_url=get("REDIS_URL"),
            redis_cluster=get("REDIS_CLUSTER"),
            log_level=(get("LOG_LEVEL") or cls.log_level).upper(),
            log_format=(get("LOG_FORMAT") or cls.log_format).lower(),
            shutdown_grace=seconds("SHUTDOWN_GRACE", cls.shutdown_grace),
            dev_mode=(get("DEV") or "").lower() in _TRUE,
            auth_jwks=path("AUTH_JWKS"),
            auth_jwks_url=get("AUTH_JWKS_URL"),
            auth_jwks_refresh=seconds("AUTH_JWKS_REFRESH", cls.auth_jwks_refresh),
            auth_issuer=get("AUTH_ISSUER") or cls.auth_issuer,
            auth_audience=get("AUTH_AUDIENCE") or cls.auth_audience,
            auth_algorithms=(
                tuple(a.strip() for a in algorithms.split(",") if a.strip())
                if algorithms
                else cls.auth_algorithms
            ),
            auth_kind_claim=get("AUTH_KIND_CLAIM") or cls.auth_kind_claim,
            service_cert_names=tuple(n.strip() for n in (names or "").split(",") if n.strip()),
            tls_cert=path("TLS_CERT"),
            tls_key=path("TLS_KEY"),
            tls_client_ca=path("TLS_CLIENT_CA"),
            quota_new_numbers=number("QUOTA_NEW_NUMBERS", cls.quota_new_numbers),
            quota_period=seconds("QUOTA_PERIOD", cls.quota_period),
            resync_token_ttl=number("RESYNC_TOKEN_TTL", cls.resync_token_ttl),
            previous_pepper_file=path("PREVIOUS_PEPPER_FILE"),
            redis_prefix=get("REDIS_PREFIX") or cls.redis_prefix,
            index_dir=path("INDEX_DIR"),
            index_rebuild_changes=number("INDEX_REBUILD_CHANGES", cls.index_rebuild_changes),
            index_max_age=seconds("INDEX_MAX_AGE", cls.index_max_age),
            max_credential_lifetime=number("MAX_CREDENTIAL_LIFETIME", cls.max_credential_lifetime),
            account_calls=number("ACCOUNT_CALLS", cls.account_calls),
            account_calls_period=seconds("ACCOUNT_CALLS_PERIOD", cls.account_calls_period),
            account_concurrent_calls=number(
                "ACCOUNT_CONCURRENT_CALLS", cls.account_concurrent_calls
            ),
            max_concurrent_calls=number("MAX_CONCURRENT_CALLS", cls.max_concurrent_calls),
            receive_timeout=seconds("RECEIVE_TIMEOUT", cls.receive_timeout),
            memory_limit=number("MEMORY_LIMIT", cls.memory_limit),
            max_connection_age=seconds("MAX_CONNECTION_AGE", cls.max_connection_age),
            allow_plaintext=(get("ALLOW_PLAINTEXT") or "").lower() in _TRUE,
            bench_ceiling=(get("BENCH_CEILING") or "").lower() in _TRUE,
            metrics_listen=get("METRICS_LISTEN"),
            workers=number("WORKERS", cls.workers),
            import_processes=number("IMPORT_PROCESSES", cls.import_processes),
            lookup_thread=(get("LOOKUP_THREAD") or "1").lower() in _TRUE,
            reuse_port=(get("REUSE_PORT") or "").lower() in _TRUE,
        )
        return cls(**{**values, **overrides})  # type: ignore[arg-type]


def _is_loopback(listen: str) -> bool:
    """Whether HOST:PORT names a loopback address."""
    return listen.rsplit(":", 1)[0].strip("[]") in _LOOPBACK
