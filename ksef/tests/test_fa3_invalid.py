"""Hand-made invalid invoices: each problem is reported with the right path, code and severity."""
import datetime
from decimal import Decimal

import pytest

from ksef import fa3, numbers
from ksef.errors import InvoiceValidationError, XmlParseError
from ksef.tests.fixtures_fa3 import FIXED_TODAY

TODAY = datetime.date(2026, 3, 10)
VALID_KSEF = "9999999999-20260302-0123456789AB-%s"


def errors(issues):
    return {(i.path, i.code) for i in issues if i.severity == "error"}


def warnings(issues):
    return {(i.path, i.code) for i in issues if i.severity == "warning"}


def check(invoice):
    return fa3.validate(invoice, today=TODAY)


def test_example_is_valid(fa3_invoice):
    assert check(fa3_invoice()) == []
    assert check(fa3_invoice(lines=7, currency="EUR")) == []
    assert fa3.validate_or_raise(fa3_invoice(), today=TODAY) == []


def test_bad_nip(fa3_invoice):
    invoice = fa3_invoice()
    invoice.podmiot1.dane_identyfikacyjne.nip = "1234567890"
    invoice.podmiot3.append(fa3.Podmiot3(dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(
        id_wew="1234567891-00001", nazwa="Oddział"), rola=2))
    invoice.podmiot_upowazniony = fa3.PodmiotUpowazniony(
        dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(nip="5555555556", nazwa="Komornik"),
        adres=fa3.Adres(adres_l1="ul. Sądowa 1"), rola_pu=2)
    issues = check(invoice)
    assert errors(issues) == {
        ("Faktura/Podmiot1/DaneIdentyfikacyjne/NIP", "nip_checksum"),
        ("Faktura/Podmiot3[1]/DaneIdentyfikacyjne/IDWew", "nip_checksum"),
        ("Faktura/PodmiotUpowazniony/DaneIdentyfikacyjne/NIP", "nip_checksum"),
    }
    nip_issue = next(i for i in issues if i.path.startswith("Faktura/Podmiot1"))
    assert nip_issue.value == "1234567890"
    assert "check digit" in nip_issue.message_en and "cyfrę kontrolną" in nip_issue.message_pl
    with pytest.raises(InvoiceValidationError) as err:
        fa3.validate_or_raise(invoice, today=TODAY)
    assert len(err.value.issues) == 3


def test_wrong_totals(fa3_invoice):
    invoice = fa3_invoice(lines=3)
    invoice.fa.p_15 += Decimal("1.00")
    assert errors(check(invoice)) == {("Faktura/Fa/P_15", "total_mismatch")}
    invoice = fa3_invoice(lines=3)
    invoice.fa.p_14_1 += Decimal("0.05")
    invoice.fa.p_15 += Decimal("0.05")
    issue = next(i for i in check(invoice) if i.code == "bucket_mismatch")
    assert issue.path == "Faktura/Fa/P_14_1"
    assert issue.params["expected"] == "15.64"
    invoice = fa3_invoice(lines=3)
    invoice.fa.p_13_1 = Decimal("60.00")  # P_15 still matches the lines' gross values
    assert errors(check(invoice)) == {("Faktura/Fa/P_13_1", "bucket_mismatch")}
    invoice.fa.p_15 = Decimal("75.64")  # ... now it matches the buckets, but not the lines
    assert errors(check(invoice)) == {("Faktura/Fa/P_13_1", "bucket_mismatch")}
    invoice.fa.p_15 = Decimal("70.00")
    assert errors(check(invoice)) == {("Faktura/Fa/P_13_1", "bucket_mismatch"), ("Faktura/Fa/P_15", "total_mismatch")}


def test_one_cent_rounding_tolerated(fa3_invoice):
    invoice = fa3_invoice(lines=3)
    invoice.fa.p_14_1 += Decimal("0.01")
    invoice.fa.p_15 += Decimal("0.01")
    assert check(invoice) == []


def test_missing_and_extra_buckets(fa3_invoice):
    invoice = fa3_invoice(lines=2)
    invoice.fa.fa_wiersz[1].p_12 = fa3.RATE_8
    invoice.fa.p_13_6_1 = Decimal("5.00")
    found = errors(check(invoice))
    assert ("Faktura/Fa/P_13_2", "bucket_missing") in found
    assert ("Faktura/Fa/P_13_6_1", "bucket_without_lines") in found
    fa3.apply_summary(invoice)
    assert check(invoice) == []
    assert invoice.fa.p_13_2 == Decimal("22.00") and invoice.fa.p_14_2 == Decimal("1.76")


def test_correction_reference_missing(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.rodzaj_faktury = "KOR"
    assert errors(check(invoice)) == {("Faktura/Fa/DaneFaKorygowanej", "correction_reference_missing")}
    invoice.fa.przyczyna_korekty = "rabat"  # the XSD then wants DaneFaKorygowanej too
    assert ("Faktura/Fa/DaneFaKorygowanej", "correction_reference_missing") in errors(check(invoice))
    number = numbers.generate_ksef_number("9999999999", "20260302", "0123456789AB")
    invoice.fa.dane_fa_korygowanej = [fa3.DaneFaKorygowanej(
        data_wyst_fa_korygowanej=datetime.date(2026, 3, 1), nr_fa_korygowanej="FV/1", nr_ksef=1,
        nr_ksef_fa_korygowanej=number)]
    assert check(invoice) == []
    bad = number[:-2] + ("00" if number[-2:] != "00" else "01")
    invoice.fa.dane_fa_korygowanej[0].nr_ksef_fa_korygowanej = bad
    assert errors(check(invoice)) == {("Faktura/Fa/DaneFaKorygowanej[1]/NrKSeFFaKorygowanej", "ksef_number")}
    invoice.fa.dane_fa_korygowanej[0].data_wyst_fa_korygowanej = datetime.date(2026, 3, 5)
    invoice.fa.dane_fa_korygowanej[0].nr_ksef_fa_korygowanej = number
    assert errors(check(invoice)) == {("Faktura/Fa/DaneFaKorygowanej[1]/DataWystFaKorygowanej",
                                       "corrected_date_after_issue")}


def test_correction_data_on_vat(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.dane_fa_korygowanej = [fa3.DaneFaKorygowanej(
        data_wyst_fa_korygowanej=datetime.date(2026, 3, 1), nr_fa_korygowanej="FV/1", nr_ksef_n=1)]
    invoice.fa.fa_wiersz[0].stan_przed = 1
    found = errors(check(invoice))
    assert ("Faktura/Fa/DaneFaKorygowanej", "correction_data_not_allowed") in found
    assert ("Faktura/Fa/FaWiersz[1]/StanPrzed", "before_row_not_allowed") in found


def test_foreign_currency_without_vat_in_pln(fa3_invoice):
    invoice = fa3_invoice(lines=2, currency="EUR")
    invoice.fa.p_14_1w = None
    issues = check(invoice)
    assert errors(issues) == {("Faktura/Fa/P_14_1W", "vat_pln_missing")}
    assert "EUR" in next(i for i in issues if i.code == "vat_pln_missing").message_en
    # without any exchange rate on the invoice this is only a warning
    for line in invoice.fa.fa_wiersz:
        line.kurs_waluty = None
    assert warnings(check(invoice)) == {("Faktura/Fa/P_14_1W", "vat_pln_missing")}
    invoice = fa3_invoice(lines=2, currency="EUR")
    invoice.fa.p_14_1w += Decimal("3.00")
    assert warnings(check(invoice)) == {("Faktura/Fa/P_14_1W", "vat_pln_mismatch")}


def test_pln_with_vat_in_pln(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.p_14_1w = invoice.fa.p_14_1
    invoice.fa.fa_wiersz[0].kurs_waluty = Decimal("1")
    issues = check(invoice)
    assert errors(issues) == {("Faktura/Fa/P_14_1W", "vat_pln_not_allowed")}
    assert warnings(issues) == {("Faktura/Fa/FaWiersz[1]/KursWaluty", "exchange_rate_on_pln")}


def test_bad_decimal_in_xml(fa3_invoice):
    data = fa3.build(fa3_invoice(lines=3)).replace(b"<P_8B>2</P_8B>", b"<P_8B>1,5</P_8B>")
    issues = check(data)
    assert [(i.path, i.code, i.value) for i in issues] == [("Faktura/Fa/FaWiersz[2]/P_8B", "xsd", "1,5")]
    assert "not a valid decimal number" in issues[0].message_en
    with pytest.raises(XmlParseError) as err:
        fa3.parse(data)
    assert err.value.params["path"] == "Faktura/Fa/FaWiersz[2]/P_8B"
    assert err.value.params["value"] == "1,5"


def test_bad_value_in_model(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.fa_wiersz[0].p_11 = "abc"
    issues = check(invoice)
    assert [(i.path, i.code) for i in issues] == [("Faktura/Fa/FaWiersz[1]/P_11", "bad_value")]
    with pytest.raises(InvoiceValidationError):
        fa3.build(invoice)
    invoice = fa3_invoice()
    invoice.fa.fa_wiersz[0].p_11 = Decimal("10.123")  # too many decimals: XSD says so
    issues = check(invoice)
    assert ("Faktura/Fa/FaWiersz[1]/P_11", "xsd") in errors(issues)


def test_missing_mandatory_annotation(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.adnotacje.p_16 = None
    issues = [i for i in check(invoice) if i.code == "xsd"]
    assert len(issues) == 1
    assert issues[0].path.startswith("Faktura/Fa/Adnotacje")
    assert "P_16" in issues[0].message_en and "P_16" in issues[0].message_pl
    invoice = fa3_invoice()
    invoice.fa.adnotacje.pmarzy = None
    issues = check(invoice)
    assert issues[0].path == "Faktura/Fa/Adnotacje" and issues[0].params["kind"] == "missing_element"


def test_too_large_file(fa3_invoice):
    data = fa3.build(fa3_invoice())
    big = data.replace(b"</Faktura>", b"<!--" + b"x" * 1_000_000 + b"--></Faktura>")
    issues = check(big)
    assert errors(issues) == {("Faktura", "file_too_large")}
    assert issues[0].params["limit"] == 1_000_000


def test_control_and_discouraged_characters(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.fa_wiersz[0].p_7 = "Towar\u0080"
    issues = check(invoice)
    assert [(i.code, i.value) for i in issues] == [("discouraged_character", "U+0080")]
    assert "U+0080" in issues[0].message_pl
    invoice.fa.fa_wiersz[0].p_7 = "Towar\x01"  # not allowed in XML 1.0 at all
    issues = check(invoice)
    assert [(i.path, i.code) for i in issues] == [("Faktura/Fa/FaWiersz[1]/P_7", "bad_value")]
    data = fa3.build(fa3_invoice()).replace(b"Towar testowy 1", b"Towar &#1; testowy")
    assert [i.code for i in check(data)] == ["xml_malformed"]


def test_raw_document_rules(fa3_invoice):
    data = fa3.build(fa3_invoice())
    assert [i.code for i in check(b"\xef\xbb\xbf" + data)] == ["bom"]
    latin = data.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-2"')
    assert "encoding" in [i.code for i in check(latin)]
    with_pi = data.replace(b"<Naglowek>", b"<?render fast?><Naglowek>")
    assert [i.code for i in check(with_pi)] == ["processing_instruction"]


def test_dates(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.p_1 = datetime.date(2026, 3, 11)
    assert errors(check(invoice)) == {("Faktura/Fa/P_1", "p1_in_future")}
    assert check(invoice)[0].value == "2026-03-11"
    invoice = fa3_invoice()
    invoice.fa.p_6 = None
    invoice.fa.okres_fa = fa3.OkresFa(p_6_od=datetime.date(2026, 2, 28), p_6_do=datetime.date(2026, 2, 1))
    assert errors(check(invoice)) == {("Faktura/Fa/OkresFa/P_6_Do", "period_order")}
    invoice = fa3_invoice()
    invoice.naglowek.data_wytworzenia_fa = datetime.datetime(2025, 8, 31, 23, 0, tzinfo=datetime.timezone.utc)
    issues = check(invoice)
    assert [(i.path, i.code) for i in issues] == [("Faktura/Naglowek/DataWytworzeniaFa", "xsd")]
    assert "2025-09-01" in issues[0].message_en
    invoice = fa3_invoice()
    invoice.fa.platnosc.termin_platnosci[0].termin = datetime.date(2026, 3, 1)
    assert warnings(check(invoice)) == {("Faktura/Fa/Platnosc/TerminPlatnosci[1]/Termin", "due_date_before_issue")}


def test_exemption_needs_basis(fa3_invoice):
    invoice = fa3_invoice(rate=fa3.RATE_ZW)
    assert errors(check(invoice)) == {("Faktura/Fa/Adnotacje/Zwolnienie/P_19", "exemption_missing")}
    invoice.fa.adnotacje.zwolnienie = fa3.Zwolnienie(p_19=1, p_19a="art. 43 ust. 1 pkt 37 ustawy o VAT")
    assert invoice.fa.adnotacje.zwolnienie.p_19n is None
    assert check(invoice) == []
    invoice.fa.adnotacje.zwolnienie = fa3.Zwolnienie(p_19=1)  # no basis: the XSD says which element is missing
    issues = check(invoice)
    assert issues[0].code == "xsd" and "P_19A" in issues[0].message_en


def test_reverse_charge_and_split_payment_hints(fa3_invoice):
    invoice = fa3_invoice(rate=fa3.RATE_OO)
    assert warnings(check(invoice)) == {("Faktura/Fa/Adnotacje/P_18", "reverse_charge_annotation")}
    invoice.fa.adnotacje.p_18 = 1
    assert check(invoice) == []
    invoice = fa3_invoice(lines=2)
    invoice.fa.fa_wiersz[0].p_12_zal_15 = 1
    invoice.fa.fa_wiersz[0].p_9a = Decimal("20000.00")
    invoice.fa.fa_wiersz[0].p_11 = Decimal("20000.00")
    fa3.apply_summary(invoice)
    assert warnings(check(invoice)) == {("Faktura/Fa/Adnotacje/P_18A", "split_payment")}
    invoice.fa.adnotacje.p_18a = 1
    assert check(invoice) == []


def test_margin_scheme(fa3_invoice):
    invoice = fa3_invoice()
    line = invoice.fa.fa_wiersz[0]
    line.p_12, line.p_11, line.p_9a, line.p_11a, line.p_9b = None, None, None, Decimal("15000"), Decimal("15000")
    fa3.apply_summary(invoice)
    assert invoice.fa.p_13_11 is None  # not a margin invoice yet: the line has no bucket
    invoice.fa.p_13_11 = invoice.fa.p_15 = Decimal("15000")
    assert errors(check(invoice)) == {("Faktura/Fa/Adnotacje/PMarzy/P_PMarzy", "margin_missing")}
    invoice.fa.adnotacje.pmarzy = fa3.PMarzy(p_pmarzy=1, p_pmarzy_3_1=1)
    fa3.apply_summary(invoice)
    assert invoice.fa.p_13_11 == Decimal("15000.00")
    assert check(invoice) == []


def test_advance_and_settlement_requirements(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.rodzaj_faktury = "ZAL"
    assert errors(check(invoice)) == {("Faktura/Fa/Zamowienie", "order_missing")}
    invoice.fa.zamowienie = fa3.Zamowienie(wartosc_zamowienia=Decimal("123.00"), zamowienie_wiersz=[
        fa3.ZamowienieWiersz(nr_wiersza_zam=1, p_7z="Towar", p_11_netto_z=Decimal("100.00"),
                             p_11_vat_z=Decimal("23.00"), p_12z="23")])
    invoice.fa.fa_wiersz = []
    assert check(invoice) == []
    invoice.fa.zamowienie.wartosc_zamowienia = Decimal("120.00")
    assert warnings(check(invoice)) == {("Faktura/Fa/Zamowienie/WartoscZamowienia", "order_total_mismatch")}
    invoice = fa3_invoice()
    invoice.fa.rodzaj_faktury = "ROZ"
    assert errors(check(invoice)) == {("Faktura/Fa/FakturaZaliczkowa", "advance_invoice_missing")}
    invoice = fa3_invoice()
    invoice.fa.fa_wiersz = []
    found = errors(check(invoice))
    assert ("Faktura/Fa/FaWiersz", "lines_missing") in found


def test_settlement_sums(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.rozliczenie = fa3.Rozliczenie(
        obciazenia=[fa3.KwotaPowod(kwota=Decimal("5"), powod="kaucja")], suma_obciazen=Decimal("6"),
        do_zaplaty=invoice.fa.p_15 + 5)
    found = check(invoice)
    assert errors(found) == {("Faktura/Fa/Rozliczenie/SumaObciazen", "settlement_sum_mismatch")}
    assert warnings(found) == {("Faktura/Fa/Rozliczenie/DoZaplaty", "settlement_total_mismatch")}


def test_parties(fa3_invoice):
    invoice = fa3_invoice(rate=fa3.RATE_0_WDT)
    invoice.podmiot2.jst = 1
    invoice.podmiot2.dane_identyfikacyjne = fa3.DaneIdentyfikacyjne(kod_ue="DE", nr_vat_ue="123456789",
                                                                    nazwa="Kunde GmbH")
    assert warnings(check(invoice)) == {("Faktura/Podmiot2/JST", "jst_recipient_missing")}
    invoice.podmiot3.append(fa3.Podmiot3(dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(
        nip="2222222222", nazwa="Szkoła"), rola=8, udzial=Decimal("50")))
    assert warnings(check(invoice)) == {("Faktura/Podmiot3[1]/Udzial", "share_without_role")}
    invoice.podmiot2.dane_identyfikacyjne = fa3.DaneIdentyfikacyjne(brak_id=1, nazwa="Konsument")
    assert ("Faktura/Podmiot2/DaneIdentyfikacyjne", "intra_eu_buyer") in warnings(check(invoice))


def test_self_billing(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.adnotacje.p_17 = 1
    assert check(invoice) == []
    invoice.podmiot2.dane_identyfikacyjne = fa3.DaneIdentyfikacyjne(kod_kraju="US", nr_id="12-3456789",
                                                                    nazwa="US Inc.")
    assert warnings(check(invoice)) == {("Faktura/Podmiot2/DaneIdentyfikacyjne/NIP", "self_billing_buyer")}


def test_not_an_invoice(samples_dir):
    upo = (samples_dir / "upo" / "pdf-generator_upo.xml").read_bytes()
    assert [i.code for i in fa3.validate(upo)] == ["unknown_form"]
    assert [i.code for i in fa3.validate(b"<a xmlns='urn:x'/>")] == ["unknown_form"]
    assert [i.code for i in fa3.validate(b"not xml")] == ["xml_malformed"]
    assert [i.code for i in fa3.validate(12)] == ["xml_parse"]
    with pytest.raises(XmlParseError) as err:
        fa3.parse(upo)
    assert err.value.params["reason"] == "unsupported_form"
    with pytest.raises(XmlParseError):
        fa3.parse(b"<Faktura")
    with pytest.raises(TypeError):
        fa3.build({"fa": {}})


def test_unknown_element_in_parse(fa3_invoice):
    data = fa3.build(fa3_invoice()).replace(b"<P_1M>", b"<Extra>1</Extra><P_1M>")
    with pytest.raises(XmlParseError) as err:
        fa3.parse(data)
    assert err.value.params["reason"] == "unexpected_element"
    assert err.value.params["path"] == "Faktura/Fa/Extra"
    issues = fa3.validate(data, today=FIXED_TODAY)
    assert [(i.path, i.code) for i in issues] == [("Faktura/Fa/Extra", "xsd")]


def test_xxe_is_not_expanded(tmp_path, fa3_invoice):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    data = fa3.build(fa3_invoice()).replace(
        b'<?xml version="1.0" encoding="UTF-8"?>',
        b'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE Faktura [<!ENTITY x SYSTEM "' + secret.as_uri().encode()
        + b'">]>').replace(b"Towar testowy 1", b"&x;")
    with pytest.raises(XmlParseError) as err:
        fa3.parse(data)
    assert "TOP-SECRET" not in str(err.value)
    issues = fa3.validate(data)
    assert [i.code for i in issues] == ["xml_malformed"]
    assert "TOP-SECRET" not in issues[0].message_en


def test_net_and_vat_come_in_pairs(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.p_14_1 = None
    issues = check(invoice)
    assert [(i.path, i.code) for i in issues if i.code == "xsd"] == [("Faktura/Fa/P_15", "xsd")]
    assert "P_14_1" in issues[0].message_en
    invoice = fa3_invoice()
    invoice.fa.p_13_1 = None
    assert ("Faktura/Fa/P_14_1", "xsd") in errors(check(invoice))


def test_build_and_validate_returns_the_validated_bytes(fa3_invoice):
    invoice = fa3_invoice(lines=4)
    data, issues = fa3.build_and_validate(invoice, today=TODAY)
    assert issues == [] and data == fa3.build(invoice)
    invoice.fa.fa_wiersz[2].p_12 = "24"
    data, issues = fa3.build_and_validate(invoice, today=TODAY)
    assert data == fa3.build(invoice)
    assert [(i.path, i.code, i.value) for i in issues] == [("Faktura/Fa/FaWiersz[3]/P_12", "xsd", "24")]
    invoice.fa.p_1 = "yesterday"
    data, issues = fa3.build_and_validate(invoice, today=TODAY)
    assert data is not None and ("Faktura/Fa/P_1", "xsd") in errors(issues)
    invoice.fa.p_1 = 12.5
    data, issues = fa3.build_and_validate(invoice, today=TODAY)
    assert data is None and [(i.path, i.code) for i in issues] == [("Faktura/Fa/P_1", "bad_value")]
