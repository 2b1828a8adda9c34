"""A second client, in Node.js (examples/node), written from docs/protocol.md alone.

It runs against a real server: hashed discovery with free re-syncs in the difference form,
and private mode with its outputs kept; it agrees with the Python SDK and with the
published vectors (contact hashes, and private mode end to end). The test installs its npm
packages itself (`npm ci`, from the committed package-lock.json).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import onnet
from tests.servers import REPO, server_process

NODE_CLIENT = REPO / "examples" / "node"
BOOK = ["+14155550100", "+442079460958", "+4930901820"]


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with the example's packages installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node is not None, "the Node.js client needs node (Debian: apt-get install nodejs)"
    assert npm is not None, "the Node.js client needs npm (Debian: apt-get install npm)"
    wanted = json.loads((NODE_CLIENT / "package.json").read_text())["dependencies"]
    if not all((NODE_CLIENT / "node_modules" / name).is_dir() for name in wanted):
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_CLIENT, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr[-3000:]
    return node


def run_node(node: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, *args], cwd=NODE_CLIENT, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_node_client_agrees_with_the_vectors(node: str) -> None:
    checked = run_node(node, "check_vectors.js")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [
        "9 of 9 contact hash vectors agree",
        "3 of 3 private mode vectors agree",
        "4 of 4 sync part vectors agree",
    ]


def test_the_node_client_discovers_and_resyncs_for_free(node: str, tmp_path: Path) -> None:
    state = tmp_path / "node.sync"
    with server_process(None, "--dev", secure=False) as server:
        with onnet.RegistryClient(server.target) as registry:
            registry.register("alice", BOOK[0])
            registry.register("charles", BOOK[1])

        def sync(*numbers: str) -> dict[str, object]:
            target = ("--target", server.target, "--state", str(state))
            done = run_node(node, "discover.js", *target, *numbers)
            assert done.returncode == 0, done.stderr
            answer: dict[str, object] = json.loads(done.stdout)
            return answer

        first = sync(*BOOK)
        expected = [{"e164": BOOK[0], "user_id": "alice"}, {"e164": BOOK[1], "user_id": "charles"}]
        assert first["matches"] == expected
        assert first["charged"] == 3
        assert state.stat().st_mode & 0o777 == 0o600
        again = sync(*BOOK)  # an unchanged book: free
        assert (again["matches"], again["charged"]) == (expected, 0)
        assert again["quota_remaining"] == first["quota_remaining"]
        changed = sync(BOOK[0], BOOK[1], "+33612345678")  # one added, one removed
        assert (changed["matches"], changed["charged"]) == (expected, 1)
        private = sync("--private", *BOOK)  # the server sees blinded elements only
        assert (private["matches"], private["charged"]) == (expected, 3)
        again = sync("--private", *BOOK)  # outputs kept in the state: free
        assert (again["matches"], again["charged"]) == (expected, 0)
        assert again["quota_remaining"] == private["quota_remaining"]
        with onnet.Client(server.target) as python:  # the reference client agrees
            found = python.discover(BOOK)
        assert [{"e164": m.e164, "user_id": m.user_id} for m in found.matches] == expected
        assert server.terminate() == 0


def test_the_node_client_syncs_a_book_in_parts(node: str, tmp_path: Path) -> None:
    """A book larger than one request: a token a part, and the re-sync still free."""
    state = tmp_path / "node.sync"
    book = [*BOOK, "+33612345678", "+16502530000"]
    with server_process(None, "--dev", "--max-batch", "2", secure=False) as server:
        with onnet.RegistryClient(server.target) as registry:
            registry.register("alice", BOOK[0])

        def sync() -> dict[str, object]:
            target = ("--target", server.target, "--state", str(state))
            done = run_node(node, "discover.js", *target, *book)
            assert done.returncode == 0, done.stderr
            answer: dict[str, object] = json.loads(done.stdout)
            return answer

        first, again = sync(), sync()
        assert server.terminate() == 0
    assert first["matches"] == again["matches"] == [{"e164": BOOK[0], "user_id": "alice"}]
    assert (first["charged"], again["charged"]) == (5, 0)
    parts = json.loads(state.read_text())["hashed"]["parts"]
    assert len(parts) > 1  # at most 2 hashes a request: several parts, each with its token
