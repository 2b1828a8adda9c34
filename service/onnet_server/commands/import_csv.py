"""Reading the bulk-import file: CSV rows of user_id,e164,discoverable, with line numbers."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from onnet import ImportRow

__all__ = ["BadLine", "ImportLine", "count_lines", "read_import_file"]

_TRUE = {"", "1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


@dataclass(frozen=True)
class ImportLine:
    """A row to send, and the line it came from."""

    line: int
    row: ImportRow


@dataclass(frozen=True)
class BadLine:
    """A line that cannot be a row; it is reported and never sent."""

    line: int
    reason: str


def count_lines(path: Path) -> int:
    """Lines in the file (for the progress bar's total)."""
    with path.open("rb") as file:
        return sum(1 for _ in file)


def read_import_file(path: Path) -> Iterator[ImportLine | BadLine]:
    """Rows of ``path``; a first line starting with "user_id" is taken as a header.

    ``discoverable`` may be empty (true), 1/0, true/false or yes/no. The number must be in
    E.164 form already; the server checks it (and the user id) and reports what it skips.
    """
    with path.open(newline="", encoding="utf-8") as file:
        for line, cells in enumerate(csv.reader(file), start=1):
            if not cells or not any(cell.strip() for cell in cells):
                continue
            if line == 1 and cells[0].strip().lower() == "user_id":
                continue
            if len(cells) not in (2, 3):
                yield BadLine(line, f"expected 2 or 3 columns, found {len(cells)}")
                continue
            flag = cells[2].strip().lower() if len(cells) == 3 else ""
            if flag not in _TRUE | _FALSE:
                yield BadLine(line, "discoverable must be true/false, yes/no or 1/0")
                continue
            yield ImportLine(line, ImportRow(cells[0].strip(), cells[1].strip(), flag in _TRUE))
