"""The committed stubs in client/onnet/v1 are exactly what proto/ produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import REPO

pytestmark = pytest.mark.integration  # runs protoc (scripts/gen_protos.py)

GENERATED = REPO / "client" / "onnet" / "v1"


def test_committed_stubs_match_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = {p.name: p.read_text() for p in (tmp_path / "onnet" / "v1").iterdir()}
    committed = {p.name: p.read_text() for p in GENERATED.glob("*_pb2*")}
    assert sorted(fresh) == sorted(committed), "run `make protos` and commit the result"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}: run `make protos` and commit the result"
    assert {".py", ".pyi"} <= {Path(name).suffix for name in fresh}
