"""Identifiers used by KSeF: KSeF numbers (with CRC-8), NIP, PESEL, EU VAT numbers.

KSeF number (KSeF 2.0): 35 characters ``NNNNNNNNNN-YYYYMMDD-XXXXXXXXXXXX-CC`` = seller NIP,
date the invoice was accepted for processing, 12 upper-case hex technical characters and a
CRC-8 (polynomial 0x07, initial value 0x00) of the ASCII bytes of the first 32 characters
(hyphens included) in two upper-case hex digits. Legacy KSeF 1.0 numbers have 36 characters
(``NNNNNNNNNN-YYYYMMDD-XXXXXXXXXXXX-XX`` with a 13-character middle part) and no CRC we can check.
"""
import datetime
import os
import re

KSEF_NUMBER_RE = re.compile(r"^(\d{10})-(\d{8})-([0-9A-F]{12})-([0-9A-F]{2})$", re.ASCII)
LEGACY_KSEF_NUMBER_RE = re.compile(r"^(\d{10})-(\d{8})-([0-9A-F]{13})-([0-9A-F]{2})$", re.ASCII)

NIP_WEIGHTS = (6, 5, 7, 2, 3, 4, 5, 6, 7)
PESEL_WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)


def _crc8_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC8_TABLE = _crc8_table()


def crc8(data):
    """CRC-8/SMBUS: polynomial 0x07, init 0x00, no reflection, no final XOR."""
    crc = 0
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc


def ksef_number_checksum(first32):
    """Two upper-case hex digits of the CRC-8 of the first 32 characters of a KSeF number."""
    return "%02X" % crc8(first32.encode("ascii"))


def parse_ksef_number(number):
    """Split a KSeF number; returns a dict or raises :class:`ValueError` with a reason code.

    Keys: ``nip``, ``date`` (:class:`datetime.date`), ``technical``, ``checksum``, ``legacy``.
    """
    if not isinstance(number, str):
        raise ValueError("not_a_string")
    value = number.strip()
    legacy = False
    m = KSEF_NUMBER_RE.match(value)
    if not m:
        m = LEGACY_KSEF_NUMBER_RE.match(value)
        legacy = bool(m)
    if not m:
        if len(value) not in (35, 36):
            raise ValueError("bad_length")
        raise ValueError("bad_format")
    nip, day, technical, checksum = m.groups()
    try:
        date = datetime.datetime.strptime(day, "%Y%m%d").date()
    except ValueError:
        raise ValueError("bad_date") from None
    if not legacy and ksef_number_checksum(value[:32]) != checksum:
        raise ValueError("bad_checksum")
    return {"nip": nip, "date": date, "technical": technical, "checksum": checksum, "legacy": legacy}


def is_valid_ksef_number(number):
    try:
        parse_ksef_number(number)
    except ValueError:
        return False
    return True


def generate_ksef_number(nip, date, technical=None):
    """Build a valid 35-character KSeF number (used by the sandbox)."""
    if technical is None:
        technical = os.urandom(6).hex().upper()
    if not re.fullmatch(r"[0-9A-F]{12}", technical):
        raise ValueError("technical part must be 12 upper-case hex characters")
    if isinstance(date, (datetime.date, datetime.datetime)):
        date = date.strftime("%Y%m%d")
    head = "%s-%s-%s" % (nip, date, technical)
    return "%s-%s" % (head, ksef_number_checksum(head))


def normalize_nip(value):
    """Strip spaces, hyphens and an optional ``PL`` prefix."""
    if value is None:
        return ""
    text = re.sub(r"[\s-]", "", str(value)).upper()
    if text.startswith("PL"):
        text = text[2:]
    return text


def is_valid_nip(value):
    """Polish NIP: 10 digits, weighted checksum mod 11 (a remainder of 10 is never valid)."""
    nip = normalize_nip(value)
    if not re.fullmatch(r"[0-9]{10}", nip):
        return False
    total = sum(int(d) * w for d, w in zip(nip, NIP_WEIGHTS))
    check = total % 11
    return check != 10 and check == int(nip[9])


def nip_check_digit(first9):
    """Check digit for 9 digits, or ``None`` when no valid NIP starts with them."""
    total = sum(int(d) * w for d, w in zip(first9, NIP_WEIGHTS))
    check = total % 11
    return None if check == 10 else check


def is_valid_pesel(value):
    pesel = str(value or "").strip()
    if not re.fullmatch(r"[0-9]{11}", pesel):
        return False
    total = sum(int(d) * w for d, w in zip(pesel, PESEL_WEIGHTS))
    return (10 - total % 10) % 10 == int(pesel[10])


# EU VAT number formats (without the country prefix), per VIES. ``EL`` is Greece, ``XI`` Northern Ireland.
EU_VAT_FORMATS = {
    "AT": r"U\d{8}",
    "BE": r"[01]\d{9}",
    "BG": r"\d{9,10}",
    "CY": r"\d{8}[A-Z]",
    "CZ": r"\d{8,10}",
    "DE": r"\d{9}",
    "DK": r"\d{8}",
    "EE": r"\d{9}",
    "EL": r"\d{9}",
    "ES": r"[0-9A-Z]\d{7}[0-9A-Z]",
    "FI": r"\d{8}",
    "FR": r"[0-9A-HJ-NP-Z]{2}\d{9}",
    "HR": r"\d{11}",
    "HU": r"\d{8}",
    "IE": r"\d{7}[A-W][A-I]?|\d[A-Z+*]\d{5}[A-W]",
    "IT": r"\d{11}",
    "LT": r"\d{9}|\d{12}",
    "LU": r"\d{8}",
    "LV": r"\d{11}",
    "MT": r"\d{8}",
    "NL": r"\d{9}B\d{2}",
    "PL": r"\d{10}",
    "PT": r"\d{9}",
    "RO": r"[1-9]\d{1,9}",
    "SE": r"\d{12}",
    "SI": r"\d{8}",
    "SK": r"\d{10}",
    "XI": r"\d{9}|\d{12}|GD\d{3}|HA\d{3}",
}

EU_COUNTRY_TO_VAT_PREFIX = {"GR": "EL", "GB": "XI"}


def split_eu_vat(value, country=None):
    """Return ``(prefix, number)`` for an EU VAT number with or without its prefix."""
    text = re.sub(r"[\s.\-]", "", str(value or "")).upper()
    if len(text) > 2 and text[:2].isalpha() and text[:2] in EU_VAT_FORMATS:
        return text[:2], text[2:]
    prefix = EU_COUNTRY_TO_VAT_PREFIX.get(country, country) if country else None
    return prefix, text


def is_valid_eu_vat(value, country=None):
    """Format check of an EU VAT number (prefix from the value or from ``country``).

    For ``PL`` the NIP checksum is verified as well.
    """
    prefix, number = split_eu_vat(value, country)
    pattern = EU_VAT_FORMATS.get(prefix or "")
    if not pattern or not re.fullmatch(pattern, number, re.ASCII):
        return False
    if prefix == "PL":
        return is_valid_nip(number)
    return True
