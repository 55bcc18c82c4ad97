import datetime

import pytest

from ksef import numbers

# Real KSeF numbers (DIGEST §6 and the CargoLink manual)
REAL = ["5842816354-20260319-33C61F800000-AD"]


@pytest.mark.parametrize("number", REAL)
def test_real_numbers_valid(number):
    info = numbers.parse_ksef_number(number)
    assert info["nip"] == number[:10]
    assert not info["legacy"]


def test_checksum_value():
    assert numbers.ksef_number_checksum("5842816354-20260319-33C61F800000") == "AD"


@pytest.mark.parametrize("number,reason", [
    ("5842816354-20260319-33C61F800000-AE", "bad_checksum"),
    ("5842816354-20260319-33c61f800000-AD", "bad_format"),
    ("5842816354-20261319-33C61F800000-AD", "bad_date"),
    ("5842816354-20260319-33C61F80000-AD", "bad_length"),
    ("", "bad_length"),
])
def test_invalid_numbers(number, reason):
    with pytest.raises(ValueError, match=reason):
        numbers.parse_ksef_number(number)


def test_legacy_36_accepted():
    legacy = numbers.parse_ksef_number("5265877635-20230101-0100001AF6290-AF")
    assert legacy["legacy"] is True
    assert numbers.is_valid_ksef_number("5265877635-20230101-0100001AF6290-AF")
    with pytest.raises(ValueError, match="bad_format"):
        numbers.parse_ksef_number("5265877635-20230101-0100001af6290-AF")


def test_generated_numbers_roundtrip():
    for _ in range(50):
        number = numbers.generate_ksef_number("5260250274", datetime.date(2026, 11, 23))
        assert len(number) == 35
        assert numbers.is_valid_ksef_number(number)
        # any single-character change in the first 32 chars is detected or makes the format invalid
        broken = number[:20] + ("0" if number[20] != "0" else "1") + number[21:]
        assert not numbers.is_valid_ksef_number(broken)


@pytest.mark.parametrize("nip,ok", [
    ("5260250274", True), ("526-025-02-74", True), ("PL5260250274", True),
    ("5260250275", False), ("526025027", False), ("abcdefghij", False),
    ("\u0661" * 10, False),  # Arabic-Indic digits are not NIP digits
])
def test_nip(nip, ok):
    assert numbers.is_valid_nip(nip) is ok


def test_pesel():
    assert numbers.is_valid_pesel("44051401359")
    assert not numbers.is_valid_pesel("44051401358")


@pytest.mark.parametrize("vat,ok", [
    ("DE123456789", True), ("DE12345678", False), ("FRXX123456789", True), ("ATU12345678", True),
    ("PL5260250274", True), ("PL5260250275", False), ("NL123456789B01", True), ("ZZ123", False),
])
def test_eu_vat(vat, ok):
    assert numbers.is_valid_eu_vat(vat) is ok
