from __future__ import annotations

from pathlib import Path

import pytest

import onnet

VCARD_3 = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Lovelace;Ada;;;\r\nFN:Ada Lovelace\r\n"
    "EMAIL;TYPE=INTERNET:ada@example.org\r\n"
    "TEL;TYPE=CELL:(415) 555-0100\r\nitem1.TEL;TYPE=pref:+44 20 7946\r\n  0958\r\n"
    "NOTE:call +1 650 253 0000 after six\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Alan\r\nTEL;TYPE=WORK,VOICE:030 901820\r\nEND:VCARD\r\n"
)
VCARD_4 = (
    'BEGIN:VCARD\nVERSION:4.0\nFN:Grace Hopper\nTEL;VALUE=uri;TYPE="voice,cell":'
    "tel:+1-202-555-0123;ext=7\nTEL;VALUE=text:06 12 34 56 78\nADR:;;1 Main St;;;;\n"
    "END:VCARD\n"
)


def test_vcard_3_reads_tel_lines_only_with_folding_and_groups() -> None:
    assert onnet.read_vcard(VCARD_3) == ["(415) 555-0100", "+44 20 7946 0958", "030 901820"]


def test_vcard_4_keeps_tel_uris_for_normalize() -> None:
    numbers = onnet.read_vcard(VCARD_4)
    assert numbers == ["tel:+1-202-555-0123;ext=7", "06 12 34 56 78"]
    assert onnet.normalize(numbers[0]) == "+12025550123"


def test_not_a_vcard() -> None:
    with pytest.raises(onnet.AddressBookError, match="BEGIN:VCARD"):
        onnet.read_vcard("Name,Phone\nAda,123\n")


def test_google_contacts_csv_with_several_numbers_per_cell() -> None:
    text = (
        "Name,Given Name,E-mail 1 - Value,Phone 1 - Type,Phone 1 - Value,Phone 2 - Value\n"
        "Ada Lovelace,Ada,ada@example.org,Mobile,+1 415 555 0100 ::: 650-253-0000,\n"
        "Alan,Alan,,Work,,030 901820\n"
    )
    assert onnet.read_csv(text) == ["+1 415 555 0100", "650-253-0000", "030 901820"]


def test_outlook_csv() -> None:
    text = (
        "First Name,Last Name,Mobile Phone,Business Phone,E-mail Address\nAda,L,555 0100,,a@b.c\n"
    )
    assert onnet.read_csv(text) == ["555 0100"]


def test_single_column_csv_without_header() -> None:
    assert onnet.read_csv("+14155550100\n\n+442079460958\n") == ["+14155550100", "+442079460958"]


def test_csv_without_a_phone_column_is_refused() -> None:
    with pytest.raises(onnet.AddressBookError, match="no phone column"):
        onnet.read_csv("Name,Email\nAda,ada@example.org\n")


def test_names_and_emails_never_come_out(tmp_path: Path) -> None:
    path = tmp_path / "book.vcf"
    path.write_text(VCARD_3, encoding="utf-8")
    everything = " ".join(onnet.read_address_book(path))
    for private in ("Ada", "Lovelace", "ada@example.org", "after six", "Alan"):
        assert private not in everything


def test_files_by_suffix_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "book.CSV"
    path.write_bytes("\ufeffPhone\n+14155550100\n".encode())
    assert onnet.read_address_book(path) == ["+14155550100"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("book.txt", b"+14155550100", "unknown address book type"),
        ("book.vcf", b"\xff\xfe\x00", "not UTF-8"),
        ("missing.vcf", None, "cannot read"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(onnet.AddressBookError, match=message):
        onnet.read_address_book(path)


def test_the_sample_address_book_reads() -> None:
    sample = Path(__file__).resolve().parents[2] / "examples" / "contacts.vcf"
    numbers = onnet.read_address_book(sample)
    assert len(numbers) >= 5


def test_quoted_parameters_may_hold_colons() -> None:
    card = 'BEGIN:VCARD\nVERSION:4.0\nTEL;TYPE="cell:work";PREF=1:+1 415 555 0100\nEND:VCARD\n'
    assert onnet.read_vcard(card) == ["+1 415 555 0100"]


def test_free_text_columns_are_not_phone_columns() -> None:
    text = "Name,Cancellation reason,Cell\nAda,call +1 650 253 0000,+14155550100\n"
    assert onnet.read_csv(text) == ["+14155550100"]
