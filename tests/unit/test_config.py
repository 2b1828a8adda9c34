from __future__ import annotations

from pathlib import Path

import pytest

from onnet_server.config import ConfigError, ServeSettings
from onnet_server.pepper import Pepper, load_pepper, write_pepper_file


def test_defaults() -> None:
    config = ServeSettings.from_env({"ONNET_DEV": "1"})
    assert config.listen == "127.0.0.1:50051"
    assert config.max_batch == 10_000
    assert config.pepper_file is None
    assert (config.quota_new_numbers, config.quota_period) == (20_000, 864_000)


@pytest.mark.parametrize(("value", "on"), [(None, True), ("1", True), ("0", False), ("no", False)])
def test_discovers_probes_run_on_their_own_thread_unless_told_not_to(
    value: str | None, on: bool
) -> None:
    env = {"ONNET_DEV": "1"} | ({"ONNET_LOOKUP_THREAD": value} if value is not None else {})
    assert ServeSettings.from_env(env).lookup_thread is on


def test_production_needs_credential_keys() -> None:
    with pytest.raises(ConfigError, match=r"set ONNET_AUTH_JWKS .* or pass --dev"):
        ServeSettings.from_env({})
    keys = ServeSettings.from_env(
        {"ONNET_AUTH_JWKS": "/etc/onnet/issuer.jwks", "ONNET_PEPPER_FILE": "/etc/p"}
    )
    assert keys.auth_jwks == Path("/etc/onnet/issuer.jwks")
    assert not keys.dev_mode


@pytest.mark.parametrize("overrides", [{}, {"workers": 2, "redis_url": "redis://127.0.0.1:1/0"}])
def test_production_needs_a_pepper(overrides: dict[str, object]) -> None:
    """Outside development mode an ephemeral pepper would key a registry that nobody finds
    after a restart: the configuration is refused, naming both settings and the command
    that makes a pepper."""
    env = {"ONNET_AUTH_JWKS": "/etc/onnet/issuer.jwks", "ONNET_LISTEN": "127.0.0.1:7"}
    with pytest.raises(ConfigError) as refused:
        ServeSettings.from_env(env, **overrides)
    message = str(refused.value)
    assert "ONNET_PEPPER_FILE" in message
    assert "ONNET_PEPPER:" in message or "ONNET_PEPPER " in message
    assert "onnet new-pepper" in message
    assert ServeSettings.from_env({**env, "ONNET_PEPPER": "ab" * 32}).pepper_hex == "ab" * 32
    assert ServeSettings.from_env({**env, "ONNET_PEPPER_FILE": "/p"}).pepper_file == Path("/p")
    # Development mode keeps its ephemeral pepper.
    assert load_pepper(ServeSettings.from_env({"ONNET_DEV": "1"})).ephemeral


def test_flags_override_the_environment() -> None:
    config = ServeSettings.from_env({"ONNET_MAX_BATCH": "5"}, dev_mode=True, max_batch=7)
    assert (config.dev_mode, config.max_batch) == (True, 7)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ONNET_DEV": "1", "ONNET_LISTEN": "0.0.0.0:1"}, "only on a loopback address"),
        ({"ONNET_DEV": "1", "ONNET_REDIS_URL": "redis://x"}, "only on the embedded store"),
        ({"ONNET_DEV": "1", "ONNET_TLS_CERT": "c"}, "together: ONNET_TLS_CERT and ONNET_TLS_KEY"),
        ({"ONNET_DEV": "1", "ONNET_TLS_CLIENT_CA": "ca"}, "needs ONNET_TLS_CERT"),
        ({"ONNET_DEV": "1", "ONNET_SERVICE_CERT_NAMES": "a"}, "needs ONNET_TLS_CLIENT_CA"),
        ({"ONNET_DEV": "1", "ONNET_QUOTA_NEW_NUMBERS": "0"}, "at least 1"),
        ({"ONNET_DEV": "1", "ONNET_QUOTA_PERIOD": "-5"}, "positive number of seconds"),
        ({"ONNET_DEV": "1", "ONNET_QUOTA_PERIOD": "soon"}, "number of seconds"),
        ({"ONNET_DEV": "1", "ONNET_RESYNC_TOKEN_TTL": "0"}, "at least 1 second"),
        ({"ONNET_DEV": "1", "ONNET_REDIS_PREFIX": "a:b"}, "letters, digits"),
    ],
)
def test_security_settings_must_agree(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServeSettings.from_env(env)


def test_environment_overrides(tmp_path: Path) -> None:
    config = ServeSettings.from_env(
        {
            "ONNET_LISTEN": "0.0.0.0:6000",
            "ONNET_MAX_BATCH": "500",
            "ONNET_LOG_LEVEL": "debug",
            "ONNET_PEPPER_FILE": str(tmp_path / "p"),
            "ONNET_SHUTDOWN_GRACE": "2.5",
            "ONNET_AUTH_JWKS": str(tmp_path / "keys.jwks"),
            "ONNET_ALLOW_PLAINTEXT": "1",
            "ONNET_MAX_CREDENTIAL_LIFETIME": "600",
            "ONNET_ACCOUNT_CALLS": "0",
            "ONNET_ACCOUNT_CALLS_PERIOD": "30",
            "ONNET_MAX_CONCURRENT_CALLS": "7",
        }
    )
    assert (config.listen, config.max_batch, config.log_level) == ("0.0.0.0:6000", 500, "DEBUG")
    assert config.pepper_file == tmp_path / "p"
    assert config.shutdown_grace == 2.5
    assert config.allow_plaintext
    assert (config.max_credential_lifetime, config.account_calls) == (600, 0)
    assert (config.account_calls_period, config.max_concurrent_calls) == (30.0, 7)
    assert ServeSettings.from_env(config.to_env()) == config


def test_plaintext_beyond_loopback_needs_the_explicit_flag(tmp_path: Path) -> None:
    settings = {
        "ONNET_PEPPER_FILE": str(tmp_path / "p"),
        "ONNET_AUTH_JWKS": str(tmp_path / "keys.jwks"),
    }
    for address in ("127.0.0.1:6000", "[::1]:6000", "localhost:6000"):
        assert not ServeSettings.from_env({**settings, "ONNET_LISTEN": address}).allow_plaintext
    with pytest.raises(ConfigError, match="ONNET_ALLOW_PLAINTEXT=1"):
        ServeSettings.from_env({**settings, "ONNET_LISTEN": "0.0.0.0:6000"})
    tls = {"ONNET_TLS_CERT": str(tmp_path / "c"), "ONNET_TLS_KEY": str(tmp_path / "k")}
    assert ServeSettings.from_env({**settings, **tls, "ONNET_LISTEN": "0.0.0.0:6000"}).tls_cert


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ONNET_MAX_BATCH": "ten"}, "ONNET_MAX_BATCH must be a whole number"),
        ({"ONNET_MAX_BATCH": "0"}, "ONNET_MAX_BATCH must be between"),
        ({"ONNET_MAX_MESSAGE_BYTES": "1000"}, "ONNET_MAX_MESSAGE_BYTES must be at least"),
        ({"ONNET_SHUTDOWN_GRACE": "soon"}, "ONNET_SHUTDOWN_GRACE must be a number"),
        ({"ONNET_SHUTDOWN_GRACE": "-1"}, "finite, non-negative"),
        ({"ONNET_SHUTDOWN_GRACE": "nan"}, "finite, non-negative"),
        ({"ONNET_LOG_LEVEL": "verbose"}, "ONNET_LOG_LEVEL must be one of"),
        ({"ONNET_MAX_MESSAGE_BYTES": "3000000000"}, "at most 2147483647"),
        ({"ONNET_REDIS_URL": "http://x"}, "must start with redis://"),
        ({"ONNET_REDIS_URL": "redis://a", "ONNET_REDIS_CLUSTER": "b:1"}, "not both"),
        ({"ONNET_MAX_CREDENTIAL_LIFETIME": "0"}, "ONNET_MAX_CREDENTIAL_LIFETIME must be"),
        ({"ONNET_ACCOUNT_CALLS": "-1"}, "ONNET_ACCOUNT_CALLS must be 0"),
        ({"ONNET_ACCOUNT_CALLS_PERIOD": "0"}, "ONNET_ACCOUNT_CALLS_PERIOD must be"),
        ({"ONNET_MAX_CONCURRENT_CALLS": "0"}, "ONNET_MAX_CONCURRENT_CALLS must be"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServeSettings.from_env(env)


def test_the_pepper_never_shows_in_repr() -> None:
    secret = "ab" * 32
    assert secret not in repr(ServeSettings(dev_mode=True, pepper_hex=secret))
    assert secret not in repr(Pepper.from_key(bytes.fromhex(secret)))


def test_pepper_sources(tmp_path: Path) -> None:
    path = tmp_path / "pepper"
    written = write_pepper_file(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    from_file = load_pepper(ServeSettings(dev_mode=True, pepper_file=path))
    assert from_file.key == written.key
    assert from_file.key_id == written.key_id
    assert not from_file.ephemeral
    from_env = load_pepper(
        ServeSettings(dev_mode=True, pepper_hex=written.key.hex(), pepper_id="k7")
    )
    assert (from_env.key, from_env.key_id) == (written.key, "k7")
    ephemeral = load_pepper(ServeSettings(dev_mode=True))
    assert ephemeral.ephemeral
    assert len(ephemeral.key) == 32
    assert ephemeral.key != load_pepper(ServeSettings(dev_mode=True)).key


def test_pepper_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "pepper"
    write_pepper_file(path)
    with pytest.raises(FileExistsError):
        write_pepper_file(path)


@pytest.mark.parametrize("text", ["zz" * 32, "ab" * 31, ""])
def test_malformed_peppers(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pepper"
    path.write_text(text)
    with pytest.raises(ConfigError, match="ONNET_PEPPER_FILE must hold 64 hex digits"):
        load_pepper(ServeSettings(dev_mode=True, pepper_file=path))
    if text:
        with pytest.raises(ConfigError, match="ONNET_PEPPER must hold 64 hex digits"):
            load_pepper(ServeSettings(dev_mode=True, pepper_hex=text))


def test_missing_pepper_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_pepper(ServeSettings(dev_mode=True, pepper_file=tmp_path / "absent"))


def test_a_configuration_survives_the_environment(tmp_path: Path) -> None:
    config = ServeSettings(
        listen="127.0.0.1:7000",
        pepper_hex="ab" * 32,
        redis_url="redis://127.0.0.1:6379/0",
        auth_jwks=tmp_path / "keys.jwks",
        auth_jwks_url="https://issuer.example/.well-known/jwks.json",
        auth_issuer="https://issuer.example/",
        auth_audience="contacts",
        auth_algorithms=("RS256", "ES256"),
        auth_kind_claim="https://onnet/kind",
        tls_cert=tmp_path / "c.pem",
        tls_key=tmp_path / "c.key",
        tls_client_ca=tmp_path / "ca.pem",
        service_cert_names=("router", "accounts"),
        quota_new_numbers=500,
        quota_period=3600.5,
        metrics_listen="127.0.0.1:9464",
        bench_ceiling=True,
        reuse_port=True,
    )
    assert ServeSettings.from_env(config.to_env()) == config
    dev = ServeSettings(dev_mode=True)
    assert ServeSettings.from_env(dev.to_env()) == dev


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ONNET_DEV": "1", "ONNET_WORKERS": "2"}, "needs Redis"),
        ({"ONNET_DEV": "1", "ONNET_WORKERS": "0"}, "between 1 and 64"),
        ({"ONNET_DEV": "1", "ONNET_METRICS_LISTEN": "9464"}, "HOST:PORT"),
    ],
)
def test_process_settings_must_agree(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServeSettings.from_env(env)


def test_workers_need_a_fixed_port_and_a_shared_pepper(tmp_path: Path) -> None:
    base = {
        "ONNET_AUTH_JWKS": str(tmp_path / "k"),
        "ONNET_REDIS_URL": "redis://127.0.0.1:1/0",
        "ONNET_WORKERS": "2",
    }
    with pytest.raises(ConfigError, match="fixed port"):
        ServeSettings.from_env({**base, "ONNET_PEPPER": "ab" * 32, "ONNET_LISTEN": "127.0.0.1:0"})
    with pytest.raises(ConfigError, match="set ONNET_PEPPER_FILE"):
        ServeSettings.from_env(base)


def test_the_retired_public_key_file_is_refused_with_what_replaced_it() -> None:
    with pytest.raises(ConfigError, match=r"ONNET_AUTH_PUBLIC_KEYS is retired: .*ONNET_AUTH_JWKS"):
        ServeSettings.from_env({"ONNET_AUTH_PUBLIC_KEYS": "/etc/onnet/account.pub"})


@pytest.mark.parametrize(
    ("algorithms", "accepted"),
    [("EdDSA", True), ("RS256, ES256", True), ("HS256", False), ("none", False), (",", False)],
)
def test_only_asymmetric_algorithms_can_be_configured(algorithms: str, accepted: bool) -> None:
    env = {"ONNET_DEV": "1", "ONNET_AUTH_ALGORITHMS": algorithms}
    if accepted:
        assert ServeSettings.from_env(env).auth_algorithms == tuple(
            a.strip() for a in algorithms.split(",")
        )
    else:
        with pytest.raises(ConfigError, match="ONNET_AUTH_ALGORITHMS must be some of EdDSA"):
            ServeSettings.from_env(env)
