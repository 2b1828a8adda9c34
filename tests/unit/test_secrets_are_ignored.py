"""The files the README's secure set-up writes are ignored by git: `git add .` never commits
a pepper, a signing key, a private key of the development certificates or a sync state."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WRITTEN_BY_THE_README = [
    "pepper",
    "signing.key",
    "signing.key.jwks",
    "certs/ca.key",
    "certs/server.key",
    "certs/service.key",
    "certs/client.key",
    "certs/ca.pem",
    "contacts.state",
]


def test_the_readmes_secrets_are_ignored() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", *WRITTEN_BY_THE_README],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert sorted(checked.stdout.split()) == sorted(WRITTEN_BY_THE_README)
