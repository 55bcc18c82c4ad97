"""Property tests: random valid-ish invoices survive build -> parse and JSON, and the XML is XSD-valid."""
import datetime
from decimal import Decimal

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ksef import fa3, numbers, schemas

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UTC = datetime.timezone.utc

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ąćęłńóśźżĄĆĘŁŃÓŚŹŻ &<>\"'-/.,:;()%#@"
text = st.text(alphabet=ALPHABET, min_size=1, max_size=40).filter(lambda s: s.strip())
short_text = st.text(alphabet=ALPHABET, min_size=1, max_size=12).filter(lambda s: s.strip())
amount = st.decimals(min_value=-100000, max_value=1000000, places=2, allow_nan=False, allow_infinity=False)
positive = st.decimals(min_value=0, max_value=1000000, places=2, allow_nan=False, allow_infinity=False)
quantity = st.decimals(min_value=0, max_value=10000, places=3, allow_nan=False, allow_infinity=False)
price = st.decimals(min_value=0, max_value=100000, places=4, allow_nan=False, allow_infinity=False)
rate_fx = st.decimals(min_value=Decimal("0.0001"), max_value=10, places=4, allow_nan=False, allow_infinity=False)
day = st.dates(min_value=datetime.date(2006, 1, 1), max_value=datetime.date(2049, 12, 31))
created = st.datetimes(min_value=datetime.datetime(2025, 9, 2), max_value=datetime.datetime(2049, 12, 31),
                       timezones=st.just(UTC))


@st.composite
def nip(draw):
    first9 = draw(st.from_regex(r"[1-9](([0-9][1-9])|([1-9][0-9]))[0-9]{6}", fullmatch=True))
    check = numbers.nip_check_digit(first9)
    assume(check is not None)
    return first9 + str(check)


addresses = st.builds(fa3.Adres, kod_kraju=st.sampled_from(["PL", "DE", "CZ"]), adres_l1=text,
                      adres_l2=st.none() | text, gln=st.none())


@st.composite
def identification(draw, allow_other=True):
    name = draw(text)
    kind = draw(st.sampled_from(["nip", "eu", "other", "none"] if allow_other else ["nip"]))
    if kind == "nip":
        return fa3.DaneIdentyfikacyjne(nip=draw(nip()), nazwa=name)
    if kind == "eu":
        return fa3.DaneIdentyfikacyjne(kod_ue=draw(st.sampled_from(["DE", "CZ", "FR", "EL"])),
                                       nr_vat_ue=draw(st.from_regex(r"[A-Z0-9]{1,12}", fullmatch=True)),
                                       nazwa=name)
    if kind == "other":
        return fa3.DaneIdentyfikacyjne(kod_kraju=draw(st.none() | st.sampled_from(["US", "GB", "UA"])),
                                       nr_id=draw(st.from_regex(r"[A-Z0-9]{1,20}", fullmatch=True)), nazwa=name)
    return fa3.DaneIdentyfikacyjne(brak_id=1, nazwa=draw(st.none() | text))


@st.composite
def lines(draw, currency, correction):
    rows = []
    for index in range(draw(st.integers(1, 5))):
        rows.append(fa3.FaWiersz(
            nr_wiersza_fa=index + 1, uu_id=draw(st.none() | short_text), p_6a=draw(st.none() | day),
            p_7=draw(text), indeks=draw(st.none() | short_text), gtin=draw(st.none() | short_text),
            p_8a=draw(st.none() | st.sampled_from(["szt.", "kg", "h"])), p_8b=draw(quantity),
            p_9a=draw(st.none() | price), p_10=draw(st.none() | price), p_11=draw(amount),
            p_12=draw(st.sampled_from(fa3.RATE_CODES)), p_12_zal_15=draw(st.none() | st.just(1)),
            gtu=draw(st.none() | st.sampled_from(["GTU_01", "GTU_12"])),
            procedura=draw(st.none() | st.sampled_from(["TT_D", "I_42", "B_SPV"])),
            kurs_waluty=draw(rate_fx) if currency != "PLN" else None,
            stan_przed=draw(st.none() | st.just(1)) if correction else None))
    return rows


@st.composite
def invoices(draw):
    currency = draw(st.sampled_from(["PLN", "PLN", "EUR", "USD"]))
    kind = draw(st.sampled_from(["VAT", "VAT", "KOR", "UPR"]))
    correction = kind == "KOR"
    zwolnienie = draw(st.sampled_from([
        fa3.Zwolnienie(), fa3.Zwolnienie(p_19=1, p_19a="art. 43 ust. 1"), fa3.Zwolnienie(p_19=1, p_19c="inna")]))
    pmarzy = draw(st.sampled_from([fa3.PMarzy(), fa3.PMarzy(p_pmarzy=1, p_pmarzy_3_2=1),
                                   fa3.PMarzy(p_pmarzy=1, p_pmarzy_2=1)]))
    adnotacje = fa3.Adnotacje(p_16=draw(st.sampled_from([1, 2])), p_17=draw(st.sampled_from([1, 2])),
                              p_18=draw(st.sampled_from([1, 2])), p_18a=draw(st.sampled_from([1, 2])),
                              zwolnienie=zwolnienie, pmarzy=pmarzy, p_23=2)
    use_period = draw(st.booleans())
    period_start = draw(day)
    fa = fa3.Fa(
        kod_waluty=currency, p_1=draw(day), p_1m=draw(st.none() | text), p_2=draw(text),
        wz=draw(st.lists(short_text, max_size=2)),
        p_6=None if use_period else draw(st.none() | day),
        okres_fa=fa3.OkresFa(p_6_od=period_start, p_6_do=period_start + datetime.timedelta(days=30))
        if use_period else None,
        adnotacje=adnotacje, rodzaj_faktury=kind,
        przyczyna_korekty=draw(text) if correction else None,
        typ_korekty=draw(st.sampled_from([1, 2, 3])) if correction else None,
        dane_fa_korygowanej=[fa3.DaneFaKorygowanej(data_wyst_fa_korygowanej=draw(day),
                                                   nr_fa_korygowanej=draw(text), nr_ksef_n=1)]
        if correction else [],
        fp=draw(st.none() | st.just(1)), tp=draw(st.none() | st.just(1)),
        dodatkowy_opis=draw(st.lists(st.builds(fa3.KluczWartosc, klucz=short_text, wartosc=text), max_size=2)),
        fa_wiersz=draw(lines(currency, correction)),
        platnosc=draw(st.none() | st.builds(
            fa3.Platnosc,
            zaplacono=st.just(1), data_zaplaty=st.dates(min_value=datetime.date(2016, 7, 1),
                                                          max_value=datetime.date(2049, 12, 31)),
            forma_platnosci=st.sampled_from([1, 2, 6]),
            rachunek_bankowy=st.lists(st.builds(fa3.RachunekBankowy,
                                                nr_rb=st.from_regex(r"[0-9]{26}", fullmatch=True),
                                                nazwa_banku=st.none() | text), max_size=2))),
    )
    invoice = fa3.Invoice(
        naglowek=fa3.Naglowek(data_wytworzenia_fa=draw(created), system_info=draw(st.none() | text)),
        podmiot1=fa3.Podmiot1(dane_identyfikacyjne=draw(identification(allow_other=False)), adres=draw(addresses),
                              dane_kontaktowe=draw(st.lists(st.builds(fa3.DaneKontaktowe, email=st.just("a@b.pl"),
                                                                      telefon=st.none() | st.just("123")),
                                                            max_size=3))),
        podmiot2=fa3.Podmiot2(dane_identyfikacyjne=draw(identification()), adres=draw(st.none() | addresses),
                              nr_klienta=draw(st.none() | short_text), jst=draw(st.sampled_from([1, 2])),
                              gv=draw(st.sampled_from([1, 2]))),
        podmiot3=draw(st.lists(st.builds(fa3.Podmiot3, dane_identyfikacyjne=identification(),
                                         rola=st.integers(1, 11), udzial=st.none() | st.decimals(
                                             min_value=0, max_value=100, places=2, allow_nan=False)),
                               max_size=2)),
        fa=fa,
    )
    fa3.apply_summary(invoice)
    return invoice


@SETTINGS
@given(invoices())
def test_build_parse_round_trip(invoice):
    data = fa3.build(invoice)
    assert schemas.validate_xsd(data) == []
    parsed = fa3.parse(data)
    assert parsed == invoice
    assert fa3.build(parsed) == data
    assert fa3.from_json(fa3.to_json(invoice)) == invoice


@SETTINGS
@given(invoices())
def test_computed_totals_pass_the_total_rules(invoice):
    issues = fa3.business_rules(invoice, today=datetime.date(2050, 1, 1))
    assert not [i for i in issues if i.code in ("total_mismatch", "bucket_mismatch", "bucket_missing",
                                                 "bucket_without_lines", "vat_pln_missing")], issues


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(amount, st.sampled_from(fa3.RATE_CODES)), min_size=1, max_size=8))
def test_summary_total_is_sum_of_buckets(rows):
    summary = fa3.compute_summary([fa3.FaWiersz(p_11=a, p_12=r) for a, r in rows])
    assert summary.p_15 == sum(summary.net.values(), Decimal(0)) + sum(summary.vat.values(), Decimal(0))
    assert sum(summary.net.values(), Decimal(0)) == sum((a for a, _ in rows), Decimal(0))
    for vat in summary.vat.values():
        assert vat == vat.quantize(Decimal("0.01"))
