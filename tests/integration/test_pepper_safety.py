"""A registry runs only with the pepper that built it (DESIGN section 6, "Configuration that
cannot silently lose data"), on real Redis and Redis Cluster with real servers."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from onnet_server.commands.rotation import drop_registry, move_blocklists
from onnet_server.config import ConfigError
from onnet_server.pepper import Pepper, write_pepper_file
from onnet_server.stores.redis_connection import connect
from onnet_server.stores.redis_layout import Layout
from onnet_server.stores.redis_pepper import PepperMismatch, pepper_check_value
from tests.security import registry_client
from tests.servers import ThreadedServer, fresh_config, server_process

USERS = {"alice": "+14155550100", "bob": "+442079460958", "carol": "+4930901820"}
KINDS = ["redis", "cluster"]
_Result = TypeVar("_Result")


def new_pepper() -> Pepper:
    return Pepper.from_key(secrets.token_bytes(32))


def where(kind: str, request: pytest.FixtureRequest) -> dict[str, object]:
    """The ServeSettings fields for the store of ``kind``."""
    if kind == "redis":
        return {"redis_url": request.getfixturevalue("redis_url")}
    return {"redis_cluster": request.getfixturevalue("cluster_seeds")}


def nodes(settings: dict[str, object]) -> list[redis.Redis]:
    """A client per Redis node: the one server, or every master of the cluster."""
    if "redis_url" in settings:
        return [redis.Redis.from_url(str(settings["redis_url"]))]
    seeds = str(settings["redis_cluster"]).split(",")
    return [redis.Redis(host=s.rsplit(":", 1)[0], port=int(s.rsplit(":", 1)[1])) for s in seeds]


def client(settings: dict[str, object]) -> redis.Redis | redis.RedisCluster:
    """One client for the whole store (a cluster client follows the slots)."""
    if "redis_url" in settings:
        return redis.Redis.from_url(str(settings["redis_url"]))
    host, port = str(settings["redis_cluster"]).split(",")[0].rsplit(":", 1)
    return redis.RedisCluster(host=host, port=int(port))


def contents(settings: dict[str, object]) -> dict[bytes, bytes]:
    """Every key of every node and its serialized value (DUMP): equal means nothing changed."""
    found: dict[bytes, bytes] = {}
    for node in nodes(settings):
        for key in node.scan_iter(count=1000):
            found[key] = node.dump(key)  # type: ignore[assignment]
    return found


def serve(settings: dict[str, object], pepper: Pepper, **overrides: object) -> ThreadedServer:
    config = fresh_config(**settings, pepper_hex=pepper.key.hex(), **overrides)
    return ThreadedServer(config).start()


def run(work: Coroutine[Any, Any, _Result]) -> _Result:
    return asyncio.run(work)


@pytest.mark.parametrize("kind", KINDS)
def test_a_registry_refuses_a_pepper_other_than_the_one_that_built_it(
    kind: str, request: pytest.FixtureRequest
) -> None:
    settings = where(kind, request)
    built_with, other = new_pepper(), new_pepper()
    first = serve(settings, built_with)
    try:
        with registry_client(first.target) as registry:
            for user_id, e164 in USERS.items():
                registry.register(user_id, e164)
    finally:
        first.stop()
    # The record: the pepper's id and a check value, never the key.
    assert client(settings).hgetall("onnet:pepper") == {
        b"id": built_with.key_id.encode(),
        b"check": pepper_check_value(built_with.key).encode(),
    }
    before = contents(settings)

    with pytest.raises(ConfigError) as refused:
        serve(settings, other)
    message = str(refused.value)
    assert f"ONNET_PEPPER holds pepper id {other.key_id}" in message
    assert f"built with pepper id {built_with.key_id}" in message
    assert "under a new ONNET_REDIS_PREFIX" in message
    assert "Rotating the pepper" in message
    for secret in (built_with.key, other.key):
        assert secret.hex()[:16] not in message
        assert pepper_check_value(secret) not in message
    assert contents(settings) == before  # refused before writing anything

    again = serve(settings, built_with)
    try:
        with registry_client(again.target) as registry:
            assert registry.lookup(list(USERS.values())) == list(USERS)
    finally:
        again.stop()

    # The other pepper is welcome under a prefix of its own (a rotation's new registry).
    elsewhere = serve(settings, other, redis_prefix="onnet2")
    try:
        with registry_client(elsewhere.target) as registry:
            assert registry.lookup(list(USERS.values())) == [None, None, None]
            registry.register("alice", USERS["alice"])
            assert registry.lookup([USERS["alice"]]) == ["alice"]
    finally:
        elsewhere.stop()
    assert client(settings).hget("onnet2:pepper", "id") == other.key_id.encode()


def test_onnet_serve_exits_with_the_reason_on_a_wrong_pepper(
    redis_url: str, tmp_path: Path
) -> None:
    right, wrong = tmp_path / "pepper.1", tmp_path / "pepper.2"
    built_with, other = write_pepper_file(right), write_pepper_file(wrong)
    env = {"ONNET_REDIS_URL": redis_url, "ONNET_PEPPER_FILE": str(right)}
    with server_process(env) as server:
        with registry_client(server.target) as registry:
            registry.register("alice", USERS["alice"])
        assert server.terminate() == 0
    with server_process({**env, "ONNET_PEPPER_FILE": str(wrong)}, wait=False) as refused:
        refused.process.wait(30)
        code = refused.terminate()
    assert code == 2
    log = refused.log()
    assert f"configuration error: ONNET_PEPPER_FILE holds pepper id {other.key_id}" in log
    assert f"built with pepper id {built_with.key_id}" in log
    assert "Rotating the pepper" in log
    assert "onnet serving on" not in log
    assert "Traceback" not in log
    for secret in (built_with.key, other.key):
        assert secret.hex()[:16] not in log


def test_a_dropped_registry_can_be_built_again_with_another_pepper(redis_url: str) -> None:
    built_with, other = new_pepper(), new_pepper()
    serve({"redis_url": redis_url}, built_with).stop()

    async def drop() -> int:
        client = connect(redis_url, None)
        try:
            return await drop_registry(client, Layout())
        finally:
            await client.aclose()

    assert run(drop()) >= 2  # the epoch and the pepper's record at least
    assert not redis.Redis.from_url(redis_url).exists("onnet:pepper")
    serve({"redis_url": redis_url}, other).stop()


def test_move_blocklists_checks_each_prefix_against_its_pepper(redis_url: str) -> None:
    settings: dict[str, object] = {"redis_url": redis_url}
    old, new = new_pepper(), new_pepper()
    for pepper, prefix in ((old, "onnet"), (new, "onnet2")):
        server = serve(settings, pepper, redis_prefix=prefix)
        try:
            with registry_client(server.target) as registry:
                for user_id, e164 in USERS.items():
                    registry.register(user_id, e164)
                if prefix == "onnet":
                    registry.block("bob", USERS["alice"])
        finally:
            server.stop()

    async def move(previous: Pepper, current: Pepper) -> int:
        client = connect(redis_url, None)
        try:
            moved = await move_blocklists(
                client, Layout("onnet"), Layout("onnet2"), previous.key, current.key
            )
        finally:
            await client.aclose()
        return moved.blocks

    with pytest.raises(
        PepperMismatch, match=f"ONNET_PREVIOUS_PEPPER_FILE holds pepper id {new.key_id}"
    ):
        run(move(new, new))
    with pytest.raises(PepperMismatch, match=f"ONNET_PEPPER_FILE holds pepper id {old.key_id}"):
        run(move(old, old))
    assert not redis.Redis.from_url(redis_url).exists(Layout("onnet2").blocks_key("bob"))
    assert run(move(old, new)) == 1


def test_a_registry_older_than_pepper_records_adopts_the_next_pepper_and_says_so(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    built_with, other = new_pepper(), new_pepper()
    first = serve({"redis_url": redis_url}, built_with)
    try:
        with registry_client(first.target) as registry:
            registry.register("alice", USERS["alice"])
    finally:
        first.stop()
    redis.Redis.from_url(redis_url).delete("onnet:pepper")  # as a registry built before records
    caplog.clear()
    serve({"redis_url": redis_url}, built_with).stop()
    adopted = f"recorded pepper id {built_with.key_id} for the existing registry under prefix onnet"
    assert adopted in caplog.text
    with pytest.raises(PepperMismatch):
        serve({"redis_url": redis_url}, other)
