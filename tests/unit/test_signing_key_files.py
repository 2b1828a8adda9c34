"""The development issuer's files: the private key owner-only, the JWKS owner-writable, and
neither written through a link planted in its place; a server warns of a JWKS others may
write (whoever can write it can mint credentials)."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from onnet_server.commands import main as cli
from onnet_server.config import ServeSettings
from onnet_server.pepper import Pepper
from onnet_server.server import _warn_about_settings


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def signing_key(path: Path) -> int:
    with pytest.raises(SystemExit) as exited:
        cli.main(["signing-key", str(path)])
    return int(exited.value.code or 0)


@pytest.mark.usefixtures("permissive_umask")
def test_the_files_modes_do_not_follow_the_umask(tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    assert signing_key(key) == 0
    assert key.stat().st_mode & 0o777 == 0o600
    jwks = tmp_path / "signing.key.jwks"
    assert jwks.stat().st_mode & 0o777 == 0o644
    assert json.loads(jwks.read_text())["keys"][0]["kty"] == "OKP"


def test_a_link_in_place_of_the_jwks_is_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "signing.key.jwks").symlink_to(target)
    assert signing_key(tmp_path / "signing.key") != 0
    assert not target.exists()


def test_a_jwks_others_may_write_is_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jwks = tmp_path / "issuer.jwks"
    jwks.write_text("{}")
    config = ServeSettings(auth_jwks=jwks, pepper_hex=secrets.token_hex(32))
    pepper = Pepper.from_key(secrets.token_bytes(32))
    for mode, warned in ((0o644, False), (0o664, True), (0o646, True)):
        jwks.chmod(mode)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            _warn_about_settings(config, pepper)
        assert ("writable by other users" in caplog.text) is warned, oct(mode)
