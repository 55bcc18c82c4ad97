"""FA(3) model, builder details, tax summary and JSON."""
import datetime
import json
from decimal import Decimal

import pytest
from lxml import etree

from ksef import fa3, schemas
from ksef.errors import XmlParseError

NS = {"f": schemas.FA3_NS}
UTC = datetime.timezone.utc


def _xpath(data, path):
    return etree.fromstring(data).xpath(path, namespaces=NS)


# ------------------------------------------------------------------------------------------------
# builder


def test_header_namespace_and_encoding(fa3_invoice):
    data = fa3.build(fa3_invoice())
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Faktura xmlns="%s">'
                           % schemas.FA3_NS.encode())
    assert not data.startswith(b"\xef\xbb\xbf")
    kod = _xpath(data, "/f:Faktura/f:Naglowek/f:KodFormularza")[0]
    assert (kod.get("kodSystemowy"), kod.get("wersjaSchemy"), kod.text) == ("FA (3)", "1-0E", "FA")
    assert _xpath(data, "string(/f:Faktura/f:Naglowek/f:WariantFormularza)") == "3"
    assert data.decode("utf-8")  # UTF-8 text


def test_deterministic_and_exponent_kept(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.fa_wiersz[0].p_8b = Decimal("1.500")
    invoice.fa.fa_wiersz[0].p_9a = Decimal("1E+1")
    first = fa3.build(invoice)
    assert first == fa3.build(invoice) == fa3.build(fa3.parse(first))
    assert b"<P_8B>1.500</P_8B>" in first
    assert b"<P_9A>10</P_9A>" in first
    assert b"<P_11>10.00</P_11>" in first
    assert fa3.build(invoice, pretty=False).count(b"\n") == 2  # after the declaration and at the end


def test_minimal_annotations():
    ann = fa3.minimal_annotations()
    assert (ann.p_16, ann.p_17, ann.p_18, ann.p_18a, ann.p_23) == (2, 2, 2, 2, 2)
    assert ann.zwolnienie.p_19n == 1 and ann.nowe_srodki_transportu.p_22n == 1 and ann.pmarzy.p_pmarzy_n == 1
    assert fa3.Fa().adnotacje == ann
    assert fa3.Zwolnienie(p_19=1, p_19b="art. 132").p_19n is None
    assert fa3.PMarzy(p_pmarzy=1, p_pmarzy_2=1).p_pmarzy_n is None
    assert fa3.NoweSrodkiTransportu(p_22=1).p_22n is None


def test_choice_marker_not_written_with_positive_alternative(fa3_invoice):
    invoice = fa3_invoice(rate=fa3.RATE_ZW)
    invoice.fa.adnotacje.zwolnienie.p_19 = 1  # set afterwards: P_19N stays in the model ...
    invoice.fa.adnotacje.zwolnienie.p_19a = "art. 43 ust. 1 pkt 37"
    data = fa3.build(invoice)
    assert _xpath(data, "count(//f:Zwolnienie/*)") == 2.0  # ... but is not written
    assert schemas.validate_xsd(data) == []


def test_datetime_formats():
    assert fa3.format_datetime(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert fa3.format_datetime(datetime.datetime(2026, 1, 2, 3, 4, 5, 120000)) == "2026-01-02T03:04:05.12"
    tz = datetime.timezone(datetime.timedelta(hours=1))
    assert fa3.format_datetime(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)) == "2026-01-02T03:04:05+01:00"
    value = fa3.parse_datetime("2026-03-22T03:27:54.0792168Z")  # .NET writes 7 fraction digits
    assert isinstance(value, fa3.XsdDateTime) and value.microsecond == 79216
    assert fa3.format_datetime(value) == "2026-03-22T03:27:54.0792168Z"
    assert type(fa3.parse_datetime("2026-01-02T03:04:05Z")) is datetime.datetime
    assert fa3.parse_datetime("2026-01-02T24:00:00") == datetime.datetime(2026, 1, 3)
    with pytest.raises(ValueError):
        fa3.parse_datetime("2026-01-02")


def test_every_model_field_maps_to_a_schema_element(spec_dir):
    """Each model field names an element that exists in the FA(3) XSD under that parent type."""
    xsd = etree.parse(str(spec_dir / "schemas" / "FA" / "schemat_FA(3)_v1-0E.xsd"))
    names = set(xsd.xpath("//xsd:element/@name | //xsd:attribute/@name",
                          namespaces={"xsd": "http://www.w3.org/2001/XMLSchema"}))
    for cls in fa3.MODEL_CLASSES:
        for spec in cls._xml_fields_:
            assert spec.xml in names or spec.xml in ("NIP", "KodKraju", "Email"), (cls.__name__, spec.xml)


def test_full_structure_round_trip(fa3_invoice):
    """An invoice using the rarely used sub-structures survives build -> parse and is XSD-valid."""
    invoice = fa3_invoice(lines=2)
    fa = invoice.fa
    invoice.podmiot1.prefiks_podatnika = "PL"
    invoice.podmiot1.status_info_podatnika = 1
    invoice.podmiot1.adres_koresp = fa3.Adres(adres_l1="Skrytka 5", gln="5901234123457")
    invoice.podmiot2.id_nabywcy = "B1"
    invoice.podmiot3 = [
        fa3.Podmiot3(dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(kod_ue="DE", nr_vat_ue="811907980",
                                                                  nazwa="Faktor GmbH"), rola=1),
        fa3.Podmiot3(dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(nr_id="X-1", nazwa="Inny"), rola_inna=1,
                     opis_roli="Agent"),
        fa3.Podmiot3(dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(nip="2222222222", nazwa="Współnabywca"),
                     rola=4, udzial=Decimal("25.5")),
    ]
    invoice.podmiot_upowazniony = fa3.PodmiotUpowazniony(
        dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(nip="3333333333", nazwa="Przedstawiciel"),
        adres=fa3.Adres(adres_l1="ul. A 1"), dane_kontaktowe=[fa3.DaneKontaktowePU(email_pu="pu@example.com")],
        rola_pu=3)
    fa.wz = ["WZ/1", "WZ/2"]
    fa.p_6, fa.okres_fa = None, fa3.OkresFa(p_6_od=datetime.date(2026, 2, 1), p_6_do=datetime.date(2026, 2, 28))
    fa.adnotacje.nowe_srodki_transportu = fa3.NoweSrodkiTransportu(p_22=1, p_42_5=2, nowy_srodek_transportu=[
        fa3.NowySrodekTransportu(p_22a=datetime.date(2026, 1, 5), p_nr_wiersza_nst=1, p_22bmk="Marka",
                                 p_22b="1200", p_22b1="VIN123")])
    fa.fp = fa.tp = 1
    fa.dodatkowy_opis = [fa3.KluczWartosc(nr_wiersza=1, klucz="Kolor", wartosc="czerwony")]
    fa.zwrot_akcyzy = 1
    fa.fa_wiersz[0].gtu, fa.fa_wiersz[0].procedura = "GTU_07", "TT_D"
    fa.fa_wiersz[0].p_6a = datetime.date(2026, 2, 10)
    fa.rozliczenie = fa3.Rozliczenie(odliczenia=[fa3.KwotaPowod(kwota=Decimal("1.00"), powod="nadpłata")],
                                     suma_odliczen=Decimal("1.00"), do_zaplaty=fa.p_15 - 1)
    fa.platnosc = fa3.Platnosc(
        znacznik_zaplaty_czesciowej=1,
        zaplata_czesciowa=[fa3.ZaplataCzesciowa(kwota_zaplaty_czesciowej=Decimal("5.00"),
                                                data_zaplaty_czesciowej=datetime.date(2026, 2, 1),
                                                platnosc_inna=1, opis_platnosci="barter")],
        termin_platnosci=[fa3.TerminPlatnosci(termin_opis=fa3.TerminOpis(ilosc=14, jednostka="dni",
                                                                        zdarzenie_poczatkowe="od dostawy"))],
        platnosc_inna=1, opis_platnosci="kompensata",
        rachunek_bankowy=[fa3.RachunekBankowy(nr_rb="PL61109010140000071219812874", swift="WBKPPLPP",
                                              rachunek_wlasny_banku=2)],
        rachunek_bankowy_faktora=[fa3.RachunekBankowy(nr_rb="DE89370400440532013000")],
        skonto=fa3.Skonto(warunki_skonta="7 dni", wysokosc_skonta="2%"),
        link_do_platnosci="https://pay.example.com/p?IPKSeF=123ABCDEFGHIJ", ipksef="123ABCDEFGHIJ")
    fa.warunki_transakcji = fa3.WarunkiTransakcji(
        umowy=[fa3.Umowa(data_umowy=datetime.date(2025, 1, 1), nr_umowy="U/1")],
        zamowienia=[fa3.ZamowienieRef(nr_zamowienia="Z/9")], nr_partii_towaru=["P1"], warunki_dostawy="FCA",
        kurs_umowny=Decimal("4.300000"), waluta_umowna="EUR",
        transport=[fa3.Transport(
            rodzaj_transportu=3, przewoznik=fa3.Przewoznik(
                dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(nip="1111111111", nazwa="Spedytor"),
                adres_przewoznika=fa3.Adres(adres_l1="ul. B 2")),
            ladunek_inny=1, opis_innego_ladunku="palety",
            data_godz_rozp_transportu=datetime.datetime(2026, 2, 1, 8, 0, tzinfo=UTC),
            wysylka_z=fa3.Adres(adres_l1="Magazyn 1"), wysylka_przez=[fa3.Adres(adres_l1="Hub")],
            wysylka_do=fa3.Adres(kod_kraju="DE", adres_l1="Lager"))],
        podmiot_posredniczacy=1)
    invoice.stopka = fa3.Stopka(informacje=[fa3.Informacje(stopka_faktury="Dziękujemy")],
                                rejestry=[fa3.Rejestry(krs="0000099999", regon="999999999", bdo="000099999")])
    invoice.zalacznik = fa3.Zalacznik(blok_danych=[fa3.BlokDanych(
        z_naglowek="Szczegóły", meta_dane=[fa3.MetaDane(z_klucz="k", z_wartosc="v")],
        tekst=fa3.Tekst(akapit=["Akapit 1", "Akapit 2"]),
        tabela=[fa3.Tabela(opis="Tabela", t_naglowek=fa3.TNaglowek(kol=[fa3.Kol(typ="txt", n_kom="Nazwa"),
                                                                       fa3.Kol(typ="dec", n_kom="Kwota")]),
                           wiersz=[fa3.Wiersz(w_kom=["A", "1.00"]), fa3.Wiersz(w_kom=["B", ""])],
                           suma=fa3.Suma(s_kom=["", "1.00"]))])])
    data = fa3.build(invoice)
    assert schemas.validate_xsd(data) == []
    parsed = fa3.parse(data)
    assert parsed == invoice
    assert fa3.from_dict(json.loads(fa3.to_json(invoice))) == invoice
    assert _xpath(data, "string(//f:Kol[2]/@Typ)") == "dec"
    assert _xpath(data, "count(//f:Wiersz[2]/f:WKom)") == 2.0
    assert [i.code for i in fa3.validate(invoice, today=datetime.date(2026, 3, 10))] == []


# ------------------------------------------------------------------------------------------------
# tax summary


def _line(p_11=None, p_12="23", **kw):
    return fa3.FaWiersz(p_11=None if p_11 is None else Decimal(p_11), p_12=p_12, **kw)


def test_summary_rounds_per_rate_not_per_line():
    lines = [_line("0.02"), _line("0.02"), _line("0.02")]
    summary = fa3.compute_summary(lines)
    # per line 0.0046 -> 0.00 each; per rate 0.06 * 0.23 = 0.0138 -> 0.01
    assert summary.net == {"1": Decimal("0.06")} and summary.vat == {"1": Decimal("0.01")}
    assert summary.p_15 == Decimal("0.07")


def test_summary_half_up_and_buckets():
    lines = [_line("0.50", "5"), _line("10", "8"), _line("10", "7"), _line("3", "0 WDT"), _line("4", "zw"),
             _line("5", "oo"), _line("6", "np II"), _line("7", "np I"), _line("8", "0 KR"), _line("9", "0 EX"),
             _line("100", "4"), _line("100", "3")]
    summary = fa3.compute_summary(lines)
    assert summary.vat["3"] == Decimal("0.03")  # 0.025 -> 0.03 (half up)
    assert summary.net["2"] == Decimal("20.00") and summary.vat["2"] == Decimal("1.50")
    assert summary.net["4"] == Decimal("200.00") and summary.vat["4"] == Decimal("7.00")
    assert {b: summary.net[b] for b in ("6_1", "6_2", "6_3", "7", "8", "9", "10")} == {
        "6_1": Decimal("8.00"), "6_2": Decimal("3.00"), "6_3": Decimal("9.00"), "7": Decimal("4.00"),
        "8": Decimal("7.00"), "9": Decimal("6.00"), "10": Decimal("5.00")}
    assert list(summary.net) == ["2", "3", "4", "6_1", "6_2", "6_3", "7", "8", "9", "10"]
    fa = fa3.Fa(fa_wiersz=lines)
    fa3.apply_summary(fa)
    assert fa.p_13_6_2 == Decimal("3.00") and fa.p_14_3 == Decimal("0.03") and fa.p_13_1 is None
    assert fa.p_15 == summary.p_15


def test_summary_negative_half_up():
    assert fa3.compute_summary([_line("-0.50", "5")]).vat["3"] == Decimal("-0.03")


def test_summary_corrections_gross_lines_and_line_vat():
    before = _line("1626.01", stan_przed=1)
    after = _line("1463.41")
    summary = fa3.compute_summary([before, after])
    assert summary.net == {"1": Decimal("-162.60")} and summary.vat == {"1": Decimal("-37.40")}
    gross = fa3.FaWiersz(p_11a=Decimal("1000"), p_12="23")
    summary = fa3.compute_summary([gross])
    assert summary.vat == {"1": Decimal("186.99")} and summary.net == {"1": Decimal("813.01")}
    assert summary.p_15 == Decimal("1000.00")
    with_vat = [_line("100", p_11vat=Decimal("23.01")), _line("100", p_11vat=Decimal("22.99"))]
    assert fa3.compute_summary(with_vat).vat == {"1": Decimal("46.00")}


def test_summary_oss_margin_and_currency():
    oss = fa3.FaWiersz(p_11=Decimal("100"), p_12_xii=Decimal("19"))
    assert fa3.compute_summary([oss]).vat == {"5": Decimal("19.00")}
    margin_line = fa3.FaWiersz(p_11a=Decimal("2000"))
    assert fa3.compute_summary([margin_line]).net == {}
    assert fa3.compute_summary([margin_line], margin=True).net == {"11": Decimal("2000.00")}
    lines = [_line("4060", kurs_waluty=Decimal("4.4080")), _line("5000", kurs_waluty=Decimal("4.5005")),
             _line("4500", kurs_waluty=Decimal("4.3250"))]
    summary = fa3.compute_summary(lines, currency="EUR")
    assert summary.vat_pln == {"1": Decimal("13768.14")}  # MF example 21
    assert fa3.compute_summary(lines, currency="PLN").vat_pln == {}
    no_rate = [_line("100")]
    assert fa3.compute_summary(no_rate, currency="EUR").vat_pln == {}
    assert fa3.compute_summary(no_rate, currency="EUR", default_rate="4.00").vat_pln == {"1": Decimal("92.00")}


def test_rate_tables():
    assert fa3.RATE_CODES == ("23", "22", "8", "7", "5", "4", "3", "0 KR", "0 WDT", "0 EX", "zw", "oo", "np I",
                              "np II")
    assert fa3.RATE_BUCKET["np II"] == "9" and fa3.RATE_BUCKET["oo"] == "10"
    assert fa3.BUCKET_ELEMENTS["1"] == ("P_13_1", "P_14_1", "P_14_1W")
    assert fa3.BUCKET_ELEMENTS["6_2"] == ("P_13_6_2", None, None)
    assert fa3.round_half_up(Decimal("2.675")) == Decimal("2.68")


# ------------------------------------------------------------------------------------------------
# JSON


def test_json_round_trip_samples(fa3_mf_examples, fa3_third_party):
    for name, data in {**fa3_mf_examples, **fa3_third_party}.items():
        invoice = fa3.parse(data)
        text = fa3.to_json(invoice)
        back = fa3.from_json(text)
        assert back == invoice, name
        assert fa3.build(back) == fa3.build(invoice), name
        assert fa3.from_json(text.encode()) == invoice


def test_json_shape(fa3_invoice):
    invoice = fa3_invoice()
    invoice.fa.fa_wiersz[0].p_8b = Decimal("1.000")
    data = fa3.to_dict(invoice)
    assert data["fa"]["p_1"] == "2026-03-02"
    assert data["fa"]["fa_wiersz"][0]["p_8b"] == "1.000"
    assert data["fa"]["p_15"] == "12.30"
    assert data["naglowek"]["data_wytworzenia_fa"] == "2026-03-02T12:00:00Z"
    assert "adnotacje" in data["fa"] and "kod_waluty" not in data["fa"]  # default PLN left out
    invoice.podmiot2.jst = None
    assert fa3.to_dict(invoice)["podmiot2"]["jst"] is None  # differs from the default: explicit null
    assert fa3.from_dict(fa3.to_dict(invoice)).podmiot2.jst is None


def test_json_hand_written_gets_defaults():
    invoice = fa3.from_json({"fa": {"p_1": "2026-03-02", "p_2": "A/1", "p_15": 12.3,
                                    "fa_wiersz": [{"nr_wiersza_fa": 1, "p_11": "10", "p_12": "23"}]}})
    assert invoice.fa.kod_waluty == "PLN" and invoice.fa.adnotacje == fa3.minimal_annotations()
    assert invoice.fa.p_15 == Decimal("12.3")


@pytest.mark.parametrize("payload,reason", [
    ({"fa": {"p_1": "2026-13-01"}}, "bad_json_value"),
    ({"fa": {"p_15": "abc"}}, "bad_json_value"),
    ({"fa": {"bogus": 1}}, "unknown_json_field"),
    ({"fa": {"fa_wiersz": {"p_11": "1"}}}, "bad_json_value"),
    ({"fa": {"p_2": 5}}, "bad_json_value"),
    ("{not json", "bad_json"),
])
def test_json_errors(payload, reason):
    with pytest.raises(XmlParseError) as err:
        fa3.from_json(payload)
    assert err.value.params["reason"] == reason


XSD = "{http://www.w3.org/2001/XMLSchema}"


def _xsd_tree(spec_dir):
    root = etree.parse(str(spec_dir / "schemas" / "FA" / "schemat_FA(3)_v1-0E.xsd")).getroot()
    types = {c.get("name"): c for c in root.findall(XSD + "complexType")}
    return root, types


def _content(element, types):
    """Complex content node of an element declaration (inline or named type), or None for simple ones."""
    inline = element.find(XSD + "complexType")
    if inline is not None:
        return inline
    type_name = (element.get("type") or "").split(":")[-1]
    return types.get(type_name)


def _children(node, types):
    """Child element declarations of a complex type in document order (sequences/choices flattened)."""
    out = []
    for child in node:
        tag = child.tag
        if tag == XSD + "element":
            out.append(child)
        elif tag in (XSD + "sequence", XSD + "choice", XSD + "complexContent", XSD + "simpleContent"):
            out.extend(_children(child, types))
        elif tag in (XSD + "extension", XSD + "restriction"):
            base = types.get((child.get("base") or "").split(":")[-1])
            if base is not None:
                out.extend(_children(base, types))
            out.extend(_children(child, types))
    return out


def _attributes(node):
    out = []
    for child in node:
        if child.tag == XSD + "attribute":
            out.append(child.get("name"))
        elif child.tag in (XSD + "sequence", XSD + "choice", XSD + "complexContent", XSD + "simpleContent",
                           XSD + "extension", XSD + "restriction"):
            out.extend(_attributes(child))
    return out


def _compare(element, cls, types, path, seen):
    content = _content(element, types)
    assert content is not None, path
    xsd_names = [c.get("name") for c in _children(content, types)]
    model = [s for s in cls._xml_fields_ if not s.is_attr]
    model_names = [s.xml for s in model]
    if cls is fa3.Naglowek:
        xsd_names = [n for n in xsd_names if n not in ("KodFormularza", "WariantFormularza")]
    if cls is fa3.DaneIdentyfikacyjne:  # one class for TPodmiot1/2/3: the XSD order is a subsequence
        positions = [model_names.index(n) for n in xsd_names]
        assert positions == sorted(positions), path
    else:
        assert model_names == xsd_names, path
    assert sorted(s.xml for s in cls._xml_fields_ if s.is_attr) == sorted(_attributes(content)), path
    for child in _children(content, types):
        if child.get("name") not in xsd_names:
            continue  # header constants written by the builder
        spec = model[model_names.index(child.get("name"))]
        sub_path = "%s/%s" % (path, child.get("name"))
        many = child.get("maxOccurs", "1") != "1"
        assert spec.many == many, sub_path
        if spec.is_class:
            key = (spec.kind, child.get("name"))
            if key not in seen:
                seen.add(key)
                _compare(child, spec.kind, types, sub_path, seen)
        else:
            simple_complex = _content(child, types)
            assert simple_complex is None or not _children(simple_complex, types), sub_path


def test_model_covers_the_whole_xsd_in_order(spec_dir):
    """Every element of the FA(3) XSD is a model field, in XSD order, with the right cardinality."""
    root, types = _xsd_tree(spec_dir)
    faktura = root.find(XSD + "element")
    assert faktura.get("name") == "Faktura"
    seen = set()
    _compare(faktura, fa3.Invoice, types, "Faktura", seen)
    assert len({cls for cls, _name in seen}) == len(fa3.MODEL_CLASSES) - 1  # every class reached (not Invoice)
