"""A base file holds the registry's fingerprints and sealed entries: private to the user
that serves them, from its first byte (stores/index_files.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onnet_server.core.index import RegistryIndex
from onnet_server.stores import index_files


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_base_file_and_its_directory_are_private_while_written_and_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = RegistryIndex()
    for i in range(10):
        index.put(f"user{i}", os.urandom(16), i + 1, True)
    base = index.snapshot().build(7)
    directory = tmp_path / "index"
    seen_while_writing: list[int] = []
    contiguous = np.ascontiguousarray

    def watching(array: Any) -> Any:
        seen_while_writing.extend(mode(path) for path in directory.glob(".*.tmp"))
        return contiguous(array)

    monkeypatch.setattr(np, "ascontiguousarray", watching)
    written = index_files.write_base(directory, base, {"built_at": 1})
    monkeypatch.undo()
    assert seen_while_writing
    assert set(seen_while_writing) == {0o600}
    assert mode(written) == 0o600
    assert mode(directory) == 0o700
    assert len(index_files.read_base(written).base) == len(base) == 10
