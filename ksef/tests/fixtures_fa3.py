"""Shared FA(3) fixtures: the official sample invoices (read at run time from the spec bundle) and helpers.

* ``fa3_mf_examples``: ``{file name: bytes}`` of the 26 MF examples;
* ``fa3_templates``: ``{file name: bytes}`` of the cirfmf templates with the placeholders filled;
* ``fa3_third_party``: ``{file name: bytes}`` of the third-party suite;
* ``fa3_invoice``: factory ``(**kwargs) -> Invoice`` = :func:`ksef.fa3.example_invoice` with a fixed date.
"""
import datetime

import pytest

# Placeholder -> value for the MF client templates (all NIPs have valid check digits).
TEMPLATE_VALUES = {
    "#nip#": "9999999999",
    "#nip_podmiot1#": "9999999999",
    "#nipOdbiorca#": "1111111111",
    "#subject2nip#": "1111111111",
    "#selfInvocingNip#": "1111111111",
    "#nip_podmiot2#": "1111111111",
    "#buyer_nip#": "1111111111",
    "#nip1_podmiot3#": "2222222222",
    "#nip2_podmiot3#": "3333333333",
    "#idwew1_podmiot3#": "2222222222-00001",
    "#idwew2_podmiot3#": "3333333333-00002",
    "#invoice_number#": "FV/2026/02/1",
    "#invoicing_date#": "2026-02-02",
    "#subject3IdentifierValue#": "<NIP>2222222222</NIP>",
}
FIXED_TODAY = datetime.date(2026, 12, 31)


def fill_template(data):
    text = data.decode("utf-8")
    for placeholder, value in TEMPLATE_VALUES.items():
        text = text.replace(placeholder, value)
    assert "#" not in text.replace("&#", ""), "unfilled placeholder"
    return text.encode("utf-8")


def _load(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.xml"))}


@pytest.fixture(scope="session")
def fa3_mf_examples(samples_dir):
    files = _load(samples_dir / "fa3" / "mf-examples")
    assert len(files) == 26
    return files


@pytest.fixture(scope="session")
def fa3_templates(samples_dir):
    return {name: fill_template(data) for name, data in _load(samples_dir / "fa3" / "cirfmf-templates").items()}


@pytest.fixture(scope="session")
def fa3_third_party(samples_dir):
    return _load(samples_dir / "fa3" / "third-party-test-suite")


@pytest.fixture(scope="session")
def fa2_samples(samples_dir):
    folder = samples_dir / "other"
    names = ("csharp_DemoWebApp_faktura-online.xml", "csharp_DemoWebApp_faktura-template.xml",
             "csharp_invoice-template-fa-2.xml", "java_invoice-template.xml")
    return {name: fill_template((folder / name).read_bytes()) for name in names}


@pytest.fixture()
def fa3_invoice():
    from ksef import fa3

    def make(**kwargs):
        kwargs.setdefault("issue_date", datetime.date(2026, 3, 2))
        return fa3.example_invoice(**kwargs)

    return make
