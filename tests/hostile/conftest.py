"""A production-style `onnet serve` process for attackers: credentials and a pepper, no --dev.

It serves plaintext on loopback (as behind a mesh that terminates TLS), so that the raw
HTTP/2 attacker of raw_http2.py can speak to it directly.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import grpc
import pytest

import onnet
from onnet._credentials import KIND_SERVICE
from tests.security import DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_NUMBER, SERVICE_NAME, security
from tests.servers import ServerProcess, server_process


def production_env(**extra: str) -> dict[str, str]:
    """Settings of a production-style server: this run's keys, a fresh pepper, no TLS."""
    return {
        "ONNET_AUTH_JWKS": str(security().public_keys),
        "ONNET_PEPPER": secrets.token_hex(32),
        **extra,
    }


@pytest.fixture
def plaintext_server() -> Iterator[ServerProcess]:
    """`onnet serve` with credentials and a pepper, plaintext on a loopback port."""
    with server_process(production_env(), secure=False) as server:
        yield server


def plaintext_registry(target: str) -> onnet.RegistryClient:
    """A Registry client with a service credential, over plaintext."""
    return onnet.RegistryClient(target, token=security().token(SERVICE_NAME, KIND_SERVICE))


def plaintext_client(
    target: str, account: str = DEFAULT_ACCOUNT, **options: object
) -> onnet.Client:
    """A Discovery client for ``account`` over plaintext; the default account is registered."""
    if account == DEFAULT_ACCOUNT:
        with plaintext_registry(target) as registry:
            registry.register(account, DEFAULT_ACCOUNT_NUMBER, discoverable=False)
    return onnet.Client(target, token=security().token(account), **options)  # type: ignore[arg-type]


def timed_get_config(target: str, account: str = DEFAULT_ACCOUNT) -> float:
    """Seconds one GetConfig takes on the wire (the SDK's get_config() is cached)."""
    metadata = (("authorization", f"Bearer {security().token(account)}"),)
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/onnet.v1.Discovery/GetConfig"
        )
        started = time.perf_counter()
        call(b"", metadata=metadata, timeout=10)
        return time.perf_counter() - started


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line")
