"""The README's pepper rotation, step by step, on a real Redis with real servers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

import onnet
from onnet.v1 import discovery_pb2
from onnet_server.pepper import write_pepper_file
from tests.security import discovery_client, registry_client
from tests.servers import REPO, ThreadedServer, fresh_config

USERS = {"alice": "+14155550100", "bob": "+442079460958", "carol": "+4930901820"}
BOOK = [*USERS.values(), "+33612345678"]


def names(result: onnet.DiscoveryResult) -> list[str]:
    return sorted(m.user_id for m in result.matches)


def onnet_admin(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnet_server", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
        env={**os.environ, **env},
    )


def eventually(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_the_registry_moves_to_a_new_pepper_without_downtime(
    redis_url: str, tmp_path: Path
) -> None:
    old_pepper, new_pepper = tmp_path / "pepper.1", tmp_path / "pepper.2"
    write_pepper_file(old_pepper)
    write_pepper_file(new_pepper)
    old = ThreadedServer(
        fresh_config(redis_url=redis_url, pepper_hex=None, pepper_file=old_pepper)
    ).start()
    new: ThreadedServer | None = None
    try:
        with registry_client(old.target) as registry:
            for user_id, e164 in USERS.items():
                registry.register(user_id, e164)
            registry.block("bob", USERS["alice"])  # bob hides from alice
        app = discovery_client(old.target, account="alice")
        assert names(app.discover(BOOK)) == ["alice", "carol"]
        old_key_id = app.get_config().oprf_key_id

        # Lookups on the old fleet never stop while the new one is built.
        answers: list[list[str]] = []
        stop = threading.Event()

        def keep_looking() -> None:
            with discovery_client(old.target, account="alice") as looker:
                while not stop.is_set():
                    answers.append(names(looker.discover(BOOK)))

        looker = threading.Thread(target=keep_looking)
        looker.start()
        try:
            # Step 2: the new fleet, new pepper, new prefix, same Redis.
            new = ThreadedServer(
                fresh_config(
                    redis_url=redis_url,
                    pepper_hex=None,
                    pepper_file=new_pepper,
                    previous_pepper_file=old_pepper,
                    redis_prefix="onnet2",
                )
            ).start()
            # Step 3: the account service re-imports every user (it holds the numbers)...
            rows = [onnet.ImportRow(u, e, True) for u, e in USERS.items()]
            with registry_client(new.target) as registry:
                assert registry.import_users(rows).imported == len(USERS)
            # ...and the blocklists move without any number, re-keyed.
            moved = onnet_admin(
                "move-blocklists", "--redis", redis_url,
                "--from-prefix", "onnet", "--to-prefix", "onnet2",
                env={
                    "ONNET_PEPPER_FILE": str(new_pepper),
                    "ONNET_PREVIOUS_PEPPER_FILE": str(old_pepper),
                },
            )  # fmt: skip
            assert moved.returncode == 0, moved.stderr
            assert "moved 1 blocks of 1 users" in moved.stdout
            time.sleep(0.2)
        finally:
            stop.set()
            looker.join(10)
        assert len(answers) > 3
        assert all(answer == ["alice", "carol"] for answer in answers)

        # Step 4: traffic moves. The app's re-sync token, issued under the old pepper, still
        # makes its paid-for contacts free; the block came along.
        with discovery_client(new.target, account="alice", sync_state=app.sync_state) as moved_app:
            spent_before = moved_app.calls.get_config(discovery_pb2.GetConfigRequest())
            eventually(lambda: names(moved_app.discover(BOOK)) == ["alice", "carol"])
            spent_after = moved_app.calls.get_config(discovery_pb2.GetConfigRequest())
            assert spent_after.quota_remaining == spent_before.quota_remaining
            assert moved_app.get_config().oprf_key_id != old_key_id  # keys carry ids
            assert names(moved_app.discover(BOOK, private=True)) == ["alice", "carol"]
        app.close()
    finally:
        old.stop()
    try:
        # Step 5: the old fleet is stopped; its registry goes, quota buckets stay.
        refused = onnet_admin("drop-registry", "--redis", redis_url, "--prefix", "onnet", env={})
        assert refused.returncode == 2  # not without --yes
        dropped = onnet_admin(
            "drop-registry", "--redis", redis_url, "--prefix", "onnet", "--yes", env={}
        )
        assert dropped.returncode == 0, dropped.stderr
        keys = [key.decode() for key in redis.Redis.from_url(redis_url).scan_iter(count=1000)]
        assert not [key for key in keys if key.startswith(("onnet:{g", "onnet:epoch"))]
        assert any(key.startswith("onnet:q:") for key in keys)
        assert any(key.startswith("onnet2:{g") for key in keys)
        assert new is not None
        with discovery_client(new.target, account="carol") as carol:
            assert names(carol.discover(BOOK)) == ["alice", "bob", "carol"]
    finally:
        if new is not None:
            new.stop()
