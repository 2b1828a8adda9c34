"""Known-answer data, each file with its provenance in a `source` field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent


def load(name: str) -> dict[str, Any]:
    """The parsed JSON file ``name``; fails if it lacks its provenance."""
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    assert data.get("source"), f"{name} must say where its data comes from"
    return data
