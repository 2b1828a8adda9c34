"""The pepper: the secret key of the registry's fingerprints, kept outside the store.

It comes from a file or the environment; outside development mode the configuration
refuses to be built without one. A development server (``--dev``, embedded store only) may
make an ephemeral one, which means its registry cannot outlive the process.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from onnet_server.config import ConfigError, ServeSettings

__all__ = [
    "PEPPER_SIZE",
    "Pepper",
    "load_pepper",
    "load_previous_pepper",
    "read_pepper_file",
    "write_pepper_file",
]

PEPPER_SIZE = 32
"""Bytes of key: AES-256."""


@dataclass(frozen=True)
class Pepper:
    """A fingerprint key and its id (the id is public; the key never leaves the process)."""

    key_id: str
    key: bytes = field(repr=False)
    ephemeral: bool = False
    """True when generated at start because none was configured."""

    @classmethod
    def from_key(cls, key: bytes, key_id: str | None = None, *, ephemeral: bool = False) -> Pepper:
        """Wrap ``key``; without ``key_id``, derive a short public id from it."""
        if len(key) != PEPPER_SIZE:
            raise ConfigError(f"the pepper must be {PEPPER_SIZE} bytes")
        # A one-way digest, so the id can be logged and shared without revealing the key.
        derived = hashlib.sha256(b"onnet/pepper-id:" + key).hexdigest()[:8]
        return cls(key_id or derived, key, ephemeral)


def _parse_hex(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(f"{source} must hold {PEPPER_SIZE * 2} hex digits") from None
    if len(key) != PEPPER_SIZE:
        raise ConfigError(f"{source} must hold {PEPPER_SIZE * 2} hex digits")
    return key


def read_pepper_file(path: Path, variable: str) -> bytes:
    """The 32-byte key in ``path``; ConfigError names ``variable`` when it cannot be read."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{variable} cannot be read: {exc}") from None
    return _parse_hex(text, variable)


def load_previous_pepper(config: ServeSettings) -> Pepper | None:
    """The pepper before the last rotation (ONNET_PREVIOUS_PEPPER_FILE), if configured."""
    if config.previous_pepper_file is None:
        return None
    return Pepper.from_key(
        read_pepper_file(config.previous_pepper_file, "ONNET_PREVIOUS_PEPPER_FILE")
    )


def load_pepper(config: ServeSettings) -> Pepper:
    """The configured pepper: ONNET_PEPPER_FILE, else ONNET_PEPPER, else an ephemeral one.

    Only development mode gets as far as the ephemeral one: ServeSettings refuses any other
    configuration without a pepper.
    """
    if config.pepper_file is not None:
        key = read_pepper_file(config.pepper_file, "ONNET_PEPPER_FILE")
        return Pepper.from_key(key, config.pepper_id)
    if config.pepper_hex is not None:
        return Pepper.from_key(_parse_hex(config.pepper_hex, "ONNET_PEPPER"), config.pepper_id)
    return Pepper.from_key(secrets.token_bytes(PEPPER_SIZE), config.pepper_id, ephemeral=True)


def write_pepper_file(path: Path) -> Pepper:
    """Create ``path`` (mode 0600, never overwriting) holding a new random pepper."""
    key = secrets.token_bytes(PEPPER_SIZE)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(key.hex() + "\n")
    return Pepper.from_key(key)
