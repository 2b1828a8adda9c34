"""Registry.Lookup and Registry.Screen, for the services that route and screen calls."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

import onnet
from onnet.v1 import registry_pb2
from tests.security import (
    account_metadata,
    async_registry_client,
    registry_client,
    secure_channel,
    security,
)
from tests.servers import REPO, ThreadedServer

ALICE, BOB, HIDDEN, CALLER, NOBODY = (
    "+14155550100", "+442079460958", "+4930901820", "+33612345678", "+819012345678",
)  # fmt: skip


@pytest.fixture(params=["memory", "redis", "cluster"])
def routed(request: pytest.FixtureRequest, make_server: Callable[..., ThreadedServer]) -> str:
    """A server on each store, with alice, bob and a hidden user registered."""
    settings: dict[str, object] = {}
    if request.param == "redis":
        settings["redis_url"] = request.getfixturevalue("redis_url")
    elif request.param == "cluster":
        settings["redis_cluster"] = request.getfixturevalue("cluster_seeds")
    server = make_server(**settings)
    with registry_client(server.target) as registry:
        registry.register("alice", ALICE)
        registry.register("bob", BOB)
        registry.register("hidden", HIDDEN, discoverable=False)
    return server.target


def test_lookup_answers_for_every_registered_user(routed: str) -> None:
    with registry_client(routed) as registry:
        assert registry.lookup([ALICE, NOBODY, HIDDEN, BOB]) == ["alice", None, "hidden", "bob"]
        registry.register("alice", CALLER)  # a move
        assert registry.lookup([ALICE, CALLER]) == [None, "alice"]
        registry.register("bob", CALLER)  # a recycled number: bob holds it now
        assert registry.lookup([CALLER, BOB]) == ["bob", None]
        registry.unregister("hidden")  # erasure
        assert registry.lookup([HIDDEN]) == [None]


def test_lookup_by_contact_hashes(routed: str) -> None:
    with registry_client(routed) as registry:
        hashes = onnet.contact_hash(NOBODY) + onnet.contact_hash(HIDDEN)
        answer = registry.calls.lookup(registry_pb2.LookupRequest(hashes=hashes))
    assert list(answer.user_ids) == ["", "hidden"]


def test_screen_respects_blocks(routed: str) -> None:
    with registry_client(routed) as registry:
        assert registry.screen(CALLER, "alice") is onnet.Verdict.ALLOWED
        registry.block("alice", CALLER)
        assert registry.screen(CALLER, "alice") is onnet.Verdict.BLOCKED
        assert registry.screen(CALLER, "bob") is onnet.Verdict.ALLOWED  # only alice's list
        assert registry.screen(BOB, "alice") is onnet.Verdict.ALLOWED
        registry.unblock("alice", CALLER)
        assert registry.screen(CALLER, "alice") is onnet.Verdict.ALLOWED
        registry.block("hidden", CALLER)  # hidden users screen calls too
        assert registry.screen(CALLER, "hidden") is onnet.Verdict.BLOCKED
        registry.unregister("hidden")
        with pytest.raises(onnet.NotFoundError) as gone:
            registry.screen(CALLER, "hidden")
        assert gone.value.field == "callee_user_id"


async def test_async_routing(server: ThreadedServer) -> None:
    async with async_registry_client(server.target) as registry:
        await registry.register("alice", ALICE)
        assert await registry.lookup([ALICE, NOBODY]) == ["alice", None]
        assert await registry.screen(BOB, "alice") is onnet.Verdict.ALLOWED


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({}, "e164", "holds no number"),
        ({"e164": ["+1 415 555 0100"]}, "e164", "entry 0: not in E.164 form"),
        ({"e164": [ALICE, "911"]}, "e164", "entry 1: not a valid phone number"),
        ({"e164": [ALICE], "hashes": bytes(32)}, "hashes", "not both"),
        ({"hashes": bytes(33)}, "hashes", "not a multiple of 32"),
        ({"e164": [ALICE] * 10_001}, "e164", "exceeds the limit of 10000"),
    ],
)
def test_bad_lookups_name_the_field(
    server: ThreadedServer, fields: dict[str, object], field: str, words: str
) -> None:
    with registry_client(server.target) as registry, pytest.raises(onnet.InvalidArgumentError) as e:
        registry.calls.lookup(registry_pb2.LookupRequest(**fields))  # type: ignore[arg-type]
    assert e.value.field == field
    assert words in e.value.reason


@pytest.mark.parametrize(
    ("caller", "callee", "field"),
    [
        ("", "alice", "caller_e164"),
        ("+1 415 555 0100", "alice", "caller_e164"),
        (ALICE, "", "callee_user_id"),
        (ALICE, "x" * 65, "callee_user_id"),
    ],
)
def test_bad_screens_name_the_field(
    server: ThreadedServer, caller: str, callee: str, field: str
) -> None:
    with registry_client(server.target) as registry, pytest.raises(onnet.InvalidArgumentError) as e:
        registry.screen(caller, callee)
    assert e.value.field == field


def test_a_discovering_client_cannot_route_or_screen(server: ThreadedServer) -> None:
    with secure_channel(server.target) as channel:
        calls = onnet.RegistryCalls(channel, metadata=account_metadata())
        with pytest.raises(onnet.PermissionDeniedError):
            calls.lookup(registry_pb2.LookupRequest(e164=[ALICE]))
        with pytest.raises(onnet.PermissionDeniedError):
            calls.screen(registry_pb2.ScreenRequest(caller_e164=ALICE, callee_user_id="bob"))
        anonymous = onnet.RegistryCalls(channel)
        with pytest.raises(onnet.AuthenticationError):
            anonymous.lookup(registry_pb2.LookupRequest(e164=[ALICE]))


def test_the_command_line(server: ThreadedServer) -> None:
    with registry_client(server.target) as registry:
        registry.register("alice", ALICE, discoverable=False)
        registry.block("alice", CALLER)
    env = security().client_env("call-router", "service")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "onnet_server", *args, "--target", server.target],
            capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
            env={**os.environ, **env},
        )  # fmt: skip

    looked = run("lookup", "(415) 555-0100", "+442079460958", "--region", "US")
    assert looked.returncode == 0, looked.stderr
    assert looked.stdout.splitlines() == [
        "NUMBER          E.164          USER ID",
        "(415) 555-0100  +14155550100   alice",
        "+442079460958   +442079460958  -",
    ]
    assert run("screen", CALLER, "alice").stdout.strip() == "blocked"
    assert run("screen", BOB, "alice").stdout.strip() == "allowed"
    unknown = run("screen", BOB, "nobody")
    assert unknown.returncode == 1
    assert "no such user" in unknown.stderr
