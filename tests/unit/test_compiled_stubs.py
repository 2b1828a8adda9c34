"""The committed type stubs of the compiled modules name exactly what the modules define.

The stubs (core/_native.pyi, core/_resync_native.pyi) are written by hand beside their .pyx:
a function added, renamed or removed in one and not the other turns this red.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from types import ModuleType

import pytest

CORE = Path(__file__).resolve().parents[2] / "service" / "onnet_server" / "core"


def stub_names(stub: Path) -> set[str]:
    tree = ast.parse(stub.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_")
    }


def defined_names(module: ModuleType) -> set[str]:
    """Public functions and classes the compiled module itself defines (not its imports)."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or callable(value))
        and getattr(value, "__module__", None) == module.__name__
    }


@pytest.mark.parametrize("name", ["_native", "_resync_native"])
def test_each_compiled_module_matches_its_stub(name: str) -> None:
    module = importlib.import_module(f"onnet_server.core.{name}")
    assert defined_names(module) == stub_names(CORE / f"{name}.pyi")
