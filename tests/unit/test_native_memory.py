"""The compiled loops read and write only memory that is theirs (valgrind's memcheck).

A probe that reads one slot too far, or a row before its array, answers correctly: what it
reads is ignored or equal by luck, so no test of answers sees it (the eighth round of issue
12 met one: a stand-in row of -1 for every unknown number). memcheck sees every such read.
This runs tests/native_workload.py under it, CPython allocating through malloc so that
even small buffers have edges, and fails on any error with a frame in onnet's own
extension modules. Errors of CPython, numpy or the loader are theirs, and not counted;
neither are leaks (an interpreter exits without freeing much).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OURS = "onnet_server/core/_"  # the extension modules' file names start so


def errors_in_our_code(report: Path) -> list[str]:
    """Each memcheck error (leaks aside) with a frame in onnet's extension modules."""
    found = []
    for error in ElementTree.parse(report).getroot().iter("error"):
        kind = error.findtext("kind") or ""
        stack = error.find("stack")
        if kind.startswith("Leak_") or stack is None:
            continue
        frames = [(frame.findtext("obj") or "", frame.findtext("fn") or "") for frame in stack]
        if any(OURS in obj for obj, _ in frames):
            where = " < ".join(fn for obj, fn in frames if OURS in obj)
            found.append(f"{kind}: {error.findtext('what') or ''} in {where}")
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="valgrind's memcheck runs on Linux")
def test_the_compiled_loops_touch_only_their_own_memory(tmp_path: Path) -> None:
    valgrind = shutil.which("valgrind")
    assert valgrind is not None, "valgrind is missing: make test installs it"
    report = tmp_path / "memcheck.xml"
    run = subprocess.run(
        [
            valgrind,
            "--tool=memcheck",
            "--leak-check=no",
            "--error-limit=no",
            "--xml=yes",
            f"--xml-file={report}",
            sys.executable,
            "-m",
            "tests.native_workload",
        ],
        env={**os.environ, "PYTHONMALLOC": "malloc"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "workload done" in run.stdout
    assert errors_in_our_code(report) == []
