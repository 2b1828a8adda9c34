"""Reading phone numbers, and nothing else, out of exported address books.

Only telephone fields are read: names, emails, addresses and notes are skipped while parsing
and never reach the caller, so nothing but numbers can leave the device.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from onnet._errors import OnnetError

__all__ = ["AddressBookError", "read_address_book", "read_csv", "read_vcard"]

# Column names used for phone numbers by Google Contacts ("Phone 1 - Value"), Outlook
# ("Mobile Phone", "Business Phone"), Apple and plain hand-made files ("phone", "tel").
_PHONE_COLUMN = re.compile(r"phone|mobile|\bcell(ular)?\b|\btel\b", re.IGNORECASE)
# ...but not the columns that describe a number ("Phone 1 - Type", "Phone 1 - Label").
_DESCRIPTIVE_COLUMN = re.compile(r"type|label", re.IGNORECASE)
# Google Contacts puts several numbers of one kind in a cell, separated by " ::: ".
_CELL_SEPARATOR = " ::: "
# A vCard content line: optional group, property name, parameters, then the value.
# Parameter values may be quoted and hold ':' or ';' (TYPE="cell:work").
_VCARD_LINE = re.compile(r'^(?:[A-Za-z0-9-]+\.)?([A-Za-z0-9-]+)((?:;(?:[^:;"]|"[^"]*")*)*):(.*)$')


class AddressBookError(OnnetError, ValueError):
    """The file is not an address book this reader understands; the message says why."""


def read_address_book(path: str | Path) -> list[str]:
    """Read the raw phone numbers of a .csv or .vcf/.vcard file, in file order."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise AddressBookError(f"cannot read {file}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AddressBookError(f"{file} is not UTF-8 text") from None
    suffix = file.suffix.lower()
    readers = {".vcf": read_vcard, ".vcard": read_vcard, ".csv": read_csv}
    if suffix in readers:
        try:
            return readers[suffix](text)
        except AddressBookError as exc:
            raise AddressBookError(f"{file}: {exc}") from None
    raise AddressBookError(f"{file}: unknown address book type {suffix!r}; use .csv or .vcf")


def read_csv(text: str) -> list[str]:
    """Read the numbers of a CSV export.

    Columns whose header names a phone ("Phone 1 - Value", "Mobile Phone", "tel", ...) are
    read; a file with a single column and no such header is read as one number per row.
    """
    # Strict: an unclosed quote would otherwise swallow the rest of the file into one cell,
    # and the file would read as holding no numbers at all.
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise AddressBookError(
            f"malformed CSV at line {reader.line_num}: {exc} (a quote opened and never closed?)"
        ) from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = rows[0]
    phone_columns = [
        i
        for i, name in enumerate(header)
        if _PHONE_COLUMN.search(name) and not _DESCRIPTIVE_COLUMN.search(name)
    ]
    if not phone_columns:
        if max(len(row) for row in rows) == 1:
            return [row[0].strip() for row in rows if row and row[0].strip()]
        raise AddressBookError(
            "no phone column in the CSV header: expected a column named like "
            "'Phone', 'Mobile' or 'Tel'"
        )
    numbers = []
    for row in rows[1:]:
        for column in phone_columns:
            if column < len(row):
                numbers.extend(_split_cell(row[column]))
    return numbers


def _split_cell(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(_CELL_SEPARATOR) if part.strip()]


def read_vcard(text: str) -> list[str]:
    """Read the TEL values of a vCard file (versions 3.0 and 4.0, one or many cards).

    Folded lines are unfolded (RFC 6350 section 3.2); a vCard 4 ``tel:`` URI value is kept as
    written, since ``normalize`` understands it.
    """
    if "BEGIN:VCARD" not in text.upper():
        raise AddressBookError("no BEGIN:VCARD found: not a vCard file")
    numbers = []
    for line in _unfold(text):
        match = _VCARD_LINE.match(line)
        if match is None or match.group(1).upper() != "TEL":
            continue
        value = _unescape(match.group(3)).strip()
        if value:
            numbers.append(value)
    return numbers


def _unfold(text: str) -> list[str]:
    lines: list[str] = []
    for line in text.splitlines():
        if line[:1] in {" ", "\t"} and lines:
            lines[-1] += line[1:]
        else:
            lines.append(line)
    return lines


def _unescape(value: str) -> str:
    return value.replace("\\,", ",").replace("\\;", ";").replace("\\\\", "\\")
