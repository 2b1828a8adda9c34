"""Plaintext beyond loopback needs an explicit flag, and is then said aloud in the log."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from tests.hostile.conftest import production_env
from tests.servers import REPO, ThreadedServer, fresh_config


def test_plaintext_on_an_outside_address_is_refused_without_the_flag() -> None:
    # The configuration is refused before anything binds: no port is ever opened.
    finished = subprocess.run(
        [sys.executable, "-m", "onnet_server", "serve", "--listen", "0.0.0.0:0"],
        env={**production_env(), "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert "ONNET_ALLOW_PLAINTEXT=1" in finished.stderr
    assert "--allow-plaintext" in finished.stderr


def test_allowed_plaintext_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = fresh_config(tls_cert=None, tls_key=None, allow_plaintext=True)
    with caplog.at_level(logging.WARNING, logger="onnet_server"):
        server = ThreadedServer(config).start()
        server.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("serving plaintext" in message for message in warnings)
