"""Official FA(3) samples: parse, XSD-validate, business-validate and round-trip parse -> build."""
import pytest
from lxml import etree

from ksef import fa3, schemas
from ksef.tests.fixtures_fa3 import FIXED_TODAY

INVALID_BY_DESIGN = "csharp_invoice-template-fa-3-with-multiple-Subject3.xml"


def canonical(data):
    """(path, attributes, text) of every element: ignores prefixes, comments and insignificant whitespace."""
    root = etree.fromstring(data)
    out = []

    def walk(element, path):
        path = "%s/%s" % (path, etree.QName(element).localname)
        children = [c for c in element if isinstance(c.tag, str)]
        out.append((path, tuple(sorted(element.attrib.items())), "" if children else (element.text or "").strip()))
        for child in children:
            walk(child, path)

    walk(root, "")
    return out


def _round_trip(data):
    invoice = fa3.parse(data)
    built = fa3.build(invoice)
    assert canonical(built) == canonical(data)
    assert fa3.parse(built) == invoice
    assert fa3.build(fa3.parse(built)) == built  # deterministic, stable
    return invoice, built


def test_mf_examples(fa3_mf_examples):
    for name, data in fa3_mf_examples.items():
        invoice, built = _round_trip(data)
        assert invoice.source_form == "FA3"
        assert schemas.validate_xsd(built) == [], name
        issues = fa3.validate(data, today=FIXED_TODAY)
        errors = [i for i in issues if i.severity == "error"]
        assert errors == [], (name, errors)
        # the model built again validates the same way
        assert [i for i in fa3.validate(invoice, today=FIXED_TODAY) if i.severity == "error"] == [], name


def test_mf_examples_warnings_are_only_fake_ksef_numbers(fa3_mf_examples):
    codes = set()
    for data in fa3_mf_examples.values():
        codes.update(i.code for i in fa3.validate(data, today=FIXED_TODAY))
    # the MF examples use made-up KSeF numbers dated 2023/2025 whose CRC does not match
    assert codes == {"ksef_number"}


def test_templates(fa3_templates):
    assert len(fa3_templates) == 10
    for name, data in fa3_templates.items():
        if name == INVALID_BY_DESIGN:
            continue
        _invoice, built = _round_trip(data)
        assert schemas.validate_xsd(data) == [], name
        assert schemas.validate_xsd(built) == [], name
        errors = [i for i in fa3.validate(data, today=FIXED_TODAY) if i.severity == "error"]
        assert errors == [], (name, errors)
    self_billing = fa3.parse(fa3_templates["java_invoice_template_v3_self_invoicing.xml"])
    assert self_billing.fa.adnotacje.p_17 == 1


def test_template_invalid_by_design(fa3_templates):
    issues = fa3.validate(fa3_templates[INVALID_BY_DESIGN], today=FIXED_TODAY)
    paths = {i.path for i in issues if i.code == "xsd"}
    assert any(p.startswith("Faktura/Podmiot3[") and p.endswith("/IDWew") for p in paths), paths


def test_third_party_suite(fa3_third_party):
    assert len(fa3_third_party) == 12
    for name, data in fa3_third_party.items():
        _invoice, built = _round_trip(data)
        assert schemas.validate_xsd(built) == [], name
    # KSEF_06_EXP puts a '0 EX' line into P_13_6_2 (export belongs in P_13_6_3): we catch it
    issues = fa3.validate(fa3_third_party["KSEF_06_EXP.xml"], today=FIXED_TODAY)
    assert {(i.path, i.code) for i in issues if i.severity == "error"} == {
        ("Faktura/Fa/P_13_6_2", "bucket_without_lines"), ("Faktura/Fa/P_13_6_3", "bucket_missing")}


def test_fa2_samples(fa2_samples):
    for name, data in fa2_samples.items():
        assert schemas.detect_form(data) == "FA2"
        assert schemas.validate_xsd(data, form="FA2") == [], name
        invoice = fa3.parse(data)
        assert invoice.source_form == "FA2"
        assert invoice.podmiot2.jst is None and invoice.podmiot2.gv is None  # not in FA(2)
        assert invoice.fa.fa_wiersz
        issues = fa3.validate(data, today=FIXED_TODAY)
        assert [i.code for i in issues] == ["fa2_form"], (name, issues)
        # JSON keeps the FA(2) origin
        assert fa3.from_dict(fa3.to_dict(invoice)) == invoice


def test_fa2_to_fa3_conversion(fa2_samples):
    invoice = fa3.parse(fa2_samples["csharp_DemoWebApp_faktura-online.xml"])
    invoice.podmiot2.jst = invoice.podmiot2.gv = 2
    built = fa3.build(invoice)
    assert schemas.detect_form(built) == "FA3"
    assert fa3.parse(built).source_form == "FA3"


def test_fa2_free_text_payment_term():
    data = (b'<Faktura xmlns="http://crd.gov.pl/wzor/2023/06/29/12648/"><Fa><Platnosc><TerminPlatnosci>'
            b'<Termin>2026-01-10</Termin><TerminOpis>14 dni od dostawy</TerminOpis></TerminPlatnosci>'
            b'</Platnosc></Fa></Faktura>')
    fa2_doc = fa3.parse(data)
    term = fa2_doc.fa.platnosc.termin_platnosci[0]
    assert term.termin_opis.tekst == "14 dni od dostawy"
    fa2_doc.source_form = "FA3"
    issues = fa3.business_rules(fa2_doc)
    assert [i.code for i in issues if i.code == "fa2_only_data"] == ["fa2_only_data"]


@pytest.mark.parametrize("name", ["Fa_3_Przyklad_20.xml", "FA_3_Przyklad_21.xml"])
def test_foreign_currency_examples_recomputed(fa3_mf_examples, name):
    invoice = fa3.parse(fa3_mf_examples[name])
    summary = fa3.compute_summary(invoice)
    assert summary.net == {"1": invoice.fa.p_13_1}
    assert summary.vat == {"1": invoice.fa.p_14_1}
    assert summary.vat_pln == {"1": invoice.fa.p_14_1w}
    assert summary.p_15 == invoice.fa.p_15
