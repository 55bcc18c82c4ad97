"""Typed model of an FA(3) invoice (``Faktura``), one dataclass per XSD complex type.

Every attribute maps to exactly one XSD element (``metadata['xml']``); the declaration order of the
fields is the XSD order, which the builder follows. Choices of the XSD (e.g. ``P_6`` | ``OkresFa``,
``NIP`` | ``KodUE``+``NrVatUE`` | ...) are plain optional fields: set the alternative you need.

Value types:

* amounts, quantities, prices, rates: :class:`decimal.Decimal` (the exponent is kept, ``Decimal('100.00')``
  is written as ``100.00``; ints and numeric strings are accepted by the builder too);
* dates: :class:`datetime.date`; date-times: :class:`datetime.datetime` (aware or naive);
* codes/enumerations with numeric values (``P_16``, ``JST``, ``Rola``, ``FormaPlatnosci``...): ``int``;
* single check boxes ``TWybor1`` (only value ``1``: ``P_19``, ``StanPrzed``, ``Zaplacono``, ``FP``...):
  ``1`` (or ``True``) when present, ``None`` when absent;
* texts and string codes (``P_12`` rate codes, ``KodWaluty``, ``RodzajFaktury``...): ``str``;
* repeated elements: lists.
"""
import dataclasses
import datetime
from dataclasses import dataclass, field
from decimal import Decimal

STR, DEC, INT, DATE, DATETIME, FLAG = "str", "dec", "int", "date", "datetime", "flag"
SCALAR_KINDS = (STR, DEC, INT, DATE, DATETIME, FLAG)


def el(xml, kind=STR, default=None, *, factory=None, many=False, attr=False):
    """Declare a model field bound to XSD element (or attribute when ``attr``) ``xml``."""
    metadata = {"xml": xml, "kind": kind, "many": many, "attr": attr}
    if many:
        return field(default_factory=list, metadata=metadata)
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def extra(default=None):
    """A model field that is not an FA(3) element (e.g. FA(2)-only data)."""
    return field(default=default, metadata={"xml": None})


class FieldSpec:
    __slots__ = ("attr", "is_attr", "kind", "many", "xml")

    def __init__(self, attr, xml, kind, many, is_attr):
        self.attr, self.xml, self.kind, self.many, self.is_attr = attr, xml, kind, many, is_attr

    @property
    def is_class(self):
        return not isinstance(self.kind, str)


def xml_type(cls):
    """Class decorator (applied after ``@dataclass``): collect the XML field specs in declaration order."""
    specs, extras = [], []
    for f in dataclasses.fields(cls):
        if f.metadata.get("xml") is None:
            extras.append(f.name)
            continue
        specs.append(FieldSpec(f.name, f.metadata["xml"], f.metadata["kind"], f.metadata["many"],
                               f.metadata["attr"]))
    cls._xml_fields_ = tuple(specs)
    cls._extra_fields_ = tuple(extras)
    return cls


def _dataclass(cls):
    return xml_type(dataclass(slots=True)(cls))


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


# ------------------------------------------------------------------------------------------------
# Common building blocks
# ------------------------------------------------------------------------------------------------

@_dataclass
class Adres:
    """TAdres: ``KodKraju``, ``AdresL1`` (street, number / full address), ``AdresL2`` (postcode, city), ``GLN``."""

    kod_kraju: str | None = el("KodKraju", default="PL")
    adres_l1: str | None = el("AdresL1")
    adres_l2: str | None = el("AdresL2")
    gln: str | None = el("GLN")


@_dataclass
class DaneKontaktowe:
    email: str | None = el("Email")
    telefon: str | None = el("Telefon")


@_dataclass
class DaneKontaktowePU:
    """Contact data of PodmiotUpowazniony (elements ``EmailPU``, ``TelefonPU``)."""

    email_pu: str | None = el("EmailPU")
    telefon_pu: str | None = el("TelefonPU")


@_dataclass
class DaneIdentyfikacyjne:
    """Identification (TPodmiot1/TPodmiot2/TPodmiot3): exactly one alternative, then ``Nazwa``.

    * ``nip`` — Polish NIP (the only one allowed for Podmiot1/PodmiotUpowazniony/Podmiot1K);
    * ``id_wew`` — internal id ``NIP-5digits`` (Podmiot3 only);
    * ``kod_ue`` + ``nr_vat_ue`` — EU VAT number without the country prefix;
    * ``kod_kraju`` (optional) + ``nr_id`` — other tax id;
    * ``brak_id`` = 1 — no identifier (consumer).
    """

    nip: str | None = el("NIP")
    id_wew: str | None = el("IDWew")
    kod_ue: str | None = el("KodUE")
    nr_vat_ue: str | None = el("NrVatUE")
    kod_kraju: str | None = el("KodKraju")
    nr_id: str | None = el("NrID")
    brak_id: int | None = el("BrakID", FLAG)
    nazwa: str | None = el("Nazwa")


# ------------------------------------------------------------------------------------------------
# Header and parties
# ------------------------------------------------------------------------------------------------

@_dataclass
class Naglowek:
    """Header. ``KodFormularza``/``WariantFormularza`` are fixed by the form and written by the builder."""

    data_wytworzenia_fa: datetime.datetime | None = el("DataWytworzeniaFa", DATETIME, factory=_utc_now)
    system_info: str | None = el("SystemInfo")


@_dataclass
class Podmiot1:
    """Seller."""

    prefiks_podatnika: str | None = el("PrefiksPodatnika")
    nr_eori: str | None = el("NrEORI")
    dane_identyfikacyjne: DaneIdentyfikacyjne | None = el("DaneIdentyfikacyjne", DaneIdentyfikacyjne)
    adres: Adres | None = el("Adres", Adres)
    adres_koresp: Adres | None = el("AdresKoresp", Adres)
    dane_kontaktowe: list[DaneKontaktowe] = el("DaneKontaktowe", DaneKontaktowe, many=True)
    status_info_podatnika: int | None = el("StatusInfoPodatnika", INT)


@_dataclass
class Podmiot2:
    """Buyer. ``jst``/``gv`` (1 yes / 2 no) are mandatory in FA(3) and default to 2 (absent in FA(2): None)."""

    nr_eori: str | None = el("NrEORI")
    dane_identyfikacyjne: DaneIdentyfikacyjne | None = el("DaneIdentyfikacyjne", DaneIdentyfikacyjne)
    adres: Adres | None = el("Adres", Adres)
    adres_koresp: Adres | None = el("AdresKoresp", Adres)
    dane_kontaktowe: list[DaneKontaktowe] = el("DaneKontaktowe", DaneKontaktowe, many=True)
    nr_klienta: str | None = el("NrKlienta")
    id_nabywcy: str | None = el("IDNabywcy")
    jst: int | None = el("JST", INT, default=2)
    gv: int | None = el("GV", INT, default=2)


@_dataclass
class Podmiot3:
    """Third party: ``rola`` (1..11, see :data:`ksef.fa3.rates.ROLE_NAMES`) or ``rola_inna``=1 + ``opis_roli``."""

    id_nabywcy: str | None = el("IDNabywcy")
    nr_eori: str | None = el("NrEORI")
    dane_identyfikacyjne: DaneIdentyfikacyjne | None = el("DaneIdentyfikacyjne", DaneIdentyfikacyjne)
    adres: Adres | None = el("Adres", Adres)
    adres_koresp: Adres | None = el("AdresKoresp", Adres)
    dane_kontaktowe: list[DaneKontaktowe] = el("DaneKontaktowe", DaneKontaktowe, many=True)
    rola: int | None = el("Rola", INT)
    rola_inna: int | None = el("RolaInna", FLAG)
    opis_roli: str | None = el("OpisRoli")
    udzial: Decimal | None = el("Udzial", DEC)
    nr_klienta: str | None = el("NrKlienta")


@_dataclass
class PodmiotUpowazniony:
    """Authorised entity: ``rola_pu`` 1 enforcement authority, 2 bailiff, 3 tax representative."""

    nr_eori: str | None = el("NrEORI")
    dane_identyfikacyjne: DaneIdentyfikacyjne | None = el("DaneIdentyfikacyjne", DaneIdentyfikacyjne)
    adres: Adres | None = el("Adres", Adres)
    adres_koresp: Adres | None = el("AdresKoresp", Adres)
    dane_kontaktowe: list[DaneKontaktowePU] = el("DaneKontaktowe", DaneKontaktowePU, many=True)
    rola_pu: int | None = el("RolaPU", INT)


# ------------------------------------------------------------------------------------------------
# Adnotacje
# ------------------------------------------------------------------------------------------------

@_dataclass
class Zwolnienie:
    """Exemption: ``p_19``=1 + one basis (``p_19a`` Polish act, ``p_19b`` directive, ``p_19c`` other) or ``p_19n``=1.

    Setting ``p_19`` in the constructor drops the default ``p_19n``; the builder never writes ``P_19N``
    together with ``P_19``.
    """

    p_19: int | None = el("P_19", FLAG)
    p_19a: str | None = el("P_19A")
    p_19b: str | None = el("P_19B")
    p_19c: str | None = el("P_19C")
    p_19n: int | None = el("P_19N", FLAG, default=1)

    def __post_init__(self):
        if self.p_19 and self.p_19n:
            self.p_19n = None


@_dataclass
class NowySrodekTransportu:
    """One new means of transport (intra-EU supply, art. 2 pkt 10 VAT Act)."""

    p_22a: datetime.date | None = el("P_22A", DATE)
    p_nr_wiersza_nst: int | None = el("P_NrWierszaNST", INT)
    p_22bmk: str | None = el("P_22BMK")
    p_22bmd: str | None = el("P_22BMD")
    p_22bk: str | None = el("P_22BK")
    p_22bnr: str | None = el("P_22BNR")
    p_22brp: str | None = el("P_22BRP")
    p_22b: str | None = el("P_22B")
    p_22b1: str | None = el("P_22B1")
    p_22b2: str | None = el("P_22B2")
    p_22b3: str | None = el("P_22B3")
    p_22b4: str | None = el("P_22B4")
    p_22bt: str | None = el("P_22BT")
    p_22c: str | None = el("P_22C")
    p_22c1: str | None = el("P_22C1")
    p_22d: str | None = el("P_22D")
    p_22d1: str | None = el("P_22D1")


@_dataclass
class NoweSrodkiTransportu:
    """``p_22``=1 + ``p_42_5`` (1/2) + vehicles, or ``p_22n``=1 (default)."""

    p_22: int | None = el("P_22", FLAG)
    p_42_5: int | None = el("P_42_5", INT)
    nowy_srodek_transportu: list[NowySrodekTransportu] = el("NowySrodekTransportu", NowySrodekTransportu,
                                                            many=True)
    p_22n: int | None = el("P_22N", FLAG, default=1)

    def __post_init__(self):
        if self.p_22 and self.p_22n:
            self.p_22n = None


@_dataclass
class PMarzy:
    """Margin scheme: ``p_pmarzy``=1 + one of ``p_pmarzy_2`` (travel agency), ``p_pmarzy_3_1`` (second-hand
    goods), ``p_pmarzy_3_2`` (works of art), ``p_pmarzy_3_3`` (antiques); or ``p_pmarzy_n``=1 (default)."""

    p_pmarzy: int | None = el("P_PMarzy", FLAG)
    p_pmarzy_2: int | None = el("P_PMarzy_2", FLAG)
    p_pmarzy_3_1: int | None = el("P_PMarzy_3_1", FLAG)
    p_pmarzy_3_2: int | None = el("P_PMarzy_3_2", FLAG)
    p_pmarzy_3_3: int | None = el("P_PMarzy_3_3", FLAG)
    p_pmarzy_n: int | None = el("P_PMarzyN", FLAG, default=1)

    def __post_init__(self):
        if self.p_pmarzy and self.p_pmarzy_n:
            self.p_pmarzy_n = None


@_dataclass
class Adnotacje:
    """Mandatory annotations; the defaults are the "nothing special" set (DIGEST §15):
    P_16=2, P_17=2, P_18=2, P_18A=2, P_19N=1, P_22N=1, P_23=2, P_PMarzyN=1."""

    p_16: int | None = el("P_16", INT, default=2)
    p_17: int | None = el("P_17", INT, default=2)
    p_18: int | None = el("P_18", INT, default=2)
    p_18a: int | None = el("P_18A", INT, default=2)
    zwolnienie: Zwolnienie | None = el("Zwolnienie", Zwolnienie, factory=Zwolnienie)
    nowe_srodki_transportu: NoweSrodkiTransportu | None = el("NoweSrodkiTransportu", NoweSrodkiTransportu,
                                                             factory=NoweSrodkiTransportu)
    p_23: int | None = el("P_23", INT, default=2)
    pmarzy: PMarzy | None = el("PMarzy", PMarzy, factory=PMarzy)


def minimal_annotations():
    """A fresh :class:`Adnotacje` with the minimal "nothing special" values."""
    return Adnotacje()


# ------------------------------------------------------------------------------------------------
# Corrections, advances, descriptions
# ------------------------------------------------------------------------------------------------

@_dataclass
class OkresFa:
    p_6_od: datetime.date | None = el("P_6_Od", DATE)
    p_6_do: datetime.date | None = el("P_6_Do", DATE)


@_dataclass
class DaneFaKorygowanej:
    """Corrected invoice: date, number and ``nr_ksef``=1 + ``nr_ksef_fa_korygowanej`` or ``nr_ksef_n``=1."""

    data_wyst_fa_korygowanej: datetime.date | None = el("DataWystFaKorygowanej", DATE)
    nr_fa_korygowanej: str | None = el("NrFaKorygowanej")
    nr_ksef: int | None = el("NrKSeF", FLAG)
    nr_ksef_fa_korygowanej: str | None = el("NrKSeFFaKorygowanej")
    nr_ksef_n: int | None = el("NrKSeFN", FLAG)


@_dataclass
class Podmiot1K:
    """Seller data as shown on the corrected invoice."""

    prefiks_podatnika: str | None = el("PrefiksPodatnika")
    dane_identyfikacyjne: DaneIdentyfikacyjne | None = el("DaneIdentyfikacyjne", DaneIdentyfikacyjne)
    adres: Adres | None = el("Adres", Adres)


@_dataclass
class Podmiot2K:
    """Buyer (or Podmiot3) data as shown on the corrected invoice; ``id_nabywcy`` links it."""

    dane_identyfikacyjne: DaneIdentyfikacyjne | None = el("DaneIdentyfikacyjne", DaneIdentyfikacyjne)
    adres: Adres | None = el("Adres", Adres)
    id_nabywcy: str | None = el("IDNabywcy")


@_dataclass
class ZaliczkaCzesciowa:
    """Advance received (several advances on one ZAL invoice)."""

    p_6z: datetime.date | None = el("P_6Z", DATE)
    p_15z: Decimal | None = el("P_15Z", DEC)
    kurs_waluty_zw: Decimal | None = el("KursWalutyZW", DEC)


@_dataclass
class KluczWartosc:
    """``DodatkowyOpis``: free key/value, optionally tied to a line number."""

    nr_wiersza: int | None = el("NrWiersza", INT)
    klucz: str | None = el("Klucz")
    wartosc: str | None = el("Wartosc")


@_dataclass
class FakturaZaliczkowa:
    """Advance invoice settled by a ROZ invoice: KSeF number, or ``nr_ksef_zn``=1 + its number."""

    nr_ksef_zn: int | None = el("NrKSeFZN", FLAG)
    nr_fa_zaliczkowej: str | None = el("NrFaZaliczkowej")
    nr_ksef_fa_zaliczkowej: str | None = el("NrKSeFFaZaliczkowej")


# ------------------------------------------------------------------------------------------------
# Lines
# ------------------------------------------------------------------------------------------------

@_dataclass
class FaWiersz:
    """Invoice line. ``p_12`` is the rate code (see :mod:`ksef.fa3.rates`); ``stan_przed``=1 marks the
    "before correction" row of a correction invoice."""

    nr_wiersza_fa: int | None = el("NrWierszaFa", INT)
    uu_id: str | None = el("UU_ID")
    p_6a: datetime.date | None = el("P_6A", DATE)
    p_7: str | None = el("P_7")
    indeks: str | None = el("Indeks")
    gtin: str | None = el("GTIN")
    pkwiu: str | None = el("PKWiU")
    cn: str | None = el("CN")
    pkob: str | None = el("PKOB")
    p_8a: str | None = el("P_8A")
    p_8b: Decimal | None = el("P_8B", DEC)
    p_9a: Decimal | None = el("P_9A", DEC)
    p_9b: Decimal | None = el("P_9B", DEC)
    p_10: Decimal | None = el("P_10", DEC)
    p_11: Decimal | None = el("P_11", DEC)
    p_11a: Decimal | None = el("P_11A", DEC)
    p_11vat: Decimal | None = el("P_11Vat", DEC)
    p_12: str | None = el("P_12")
    p_12_xii: Decimal | None = el("P_12_XII", DEC)
    p_12_zal_15: int | None = el("P_12_Zal_15", FLAG)
    kwota_akcyzy: Decimal | None = el("KwotaAkcyzy", DEC)
    gtu: str | None = el("GTU")
    procedura: str | None = el("Procedura")
    kurs_waluty: Decimal | None = el("KursWaluty", DEC)
    stan_przed: int | None = el("StanPrzed", FLAG)


# ------------------------------------------------------------------------------------------------
# Settlement, payment, transaction terms, order
# ------------------------------------------------------------------------------------------------

@_dataclass
class KwotaPowod:
    """``Obciazenia`` / ``Odliczenia`` entry."""

    kwota: Decimal | None = el("Kwota", DEC)
    powod: str | None = el("Powod")


@_dataclass
class Rozliczenie:
    obciazenia: list[KwotaPowod] = el("Obciazenia", KwotaPowod, many=True)
    suma_obciazen: Decimal | None = el("SumaObciazen", DEC)
    odliczenia: list[KwotaPowod] = el("Odliczenia", KwotaPowod, many=True)
    suma_odliczen: Decimal | None = el("SumaOdliczen", DEC)
    do_zaplaty: Decimal | None = el("DoZaplaty", DEC)
    do_rozliczenia: Decimal | None = el("DoRozliczenia", DEC)


@_dataclass
class ZaplataCzesciowa:
    kwota_zaplaty_czesciowej: Decimal | None = el("KwotaZaplatyCzesciowej", DEC)
    data_zaplaty_czesciowej: datetime.date | None = el("DataZaplatyCzesciowej", DATE)
    forma_platnosci: int | None = el("FormaPlatnosci", INT)
    platnosc_inna: int | None = el("PlatnoscInna", FLAG)
    opis_platnosci: str | None = el("OpisPlatnosci")


@_dataclass
class TerminOpis:
    """Payment term described as "``ilosc`` ``jednostka`` from ``zdarzenie_poczatkowe``" (e.g. 30 days from
    receipt). ``tekst`` holds the free text of an FA(2) ``TerminOpis`` (not part of FA(3))."""

    ilosc: int | None = el("Ilosc", INT)
    jednostka: str | None = el("Jednostka")
    zdarzenie_poczatkowe: str | None = el("ZdarzeniePoczatkowe")
    tekst: str | None = extra()


@_dataclass
class TerminPlatnosci:
    termin: datetime.date | None = el("Termin", DATE)
    termin_opis: TerminOpis | None = el("TerminOpis", TerminOpis)


@_dataclass
class RachunekBankowy:
    """Bank account: ``nr_rb`` (IBAN/NRB, 10-34 chars), ``swift``, ``rachunek_wlasny_banku`` (1/2/3)..."""

    nr_rb: str | None = el("NrRB")
    swift: str | None = el("SWIFT")
    rachunek_wlasny_banku: int | None = el("RachunekWlasnyBanku", INT)
    nazwa_banku: str | None = el("NazwaBanku")
    opis_rachunku: str | None = el("OpisRachunku")


@_dataclass
class Skonto:
    warunki_skonta: str | None = el("WarunkiSkonta")
    wysokosc_skonta: str | None = el("WysokoscSkonta")


@_dataclass
class Platnosc:
    """Payment: ``zaplacono``=1 + ``data_zaplaty``, or ``znacznik_zaplaty_czesciowej`` + partial payments;
    due dates; ``forma_platnosci`` (1 cash, 2 card, 3 voucher, 4 cheque, 5 credit, 6 transfer, 7 mobile) or
    ``platnosc_inna``=1 + ``opis_platnosci``; bank accounts; discount; payment link / ``ipksef``."""

    zaplacono: int | None = el("Zaplacono", FLAG)
    data_zaplaty: datetime.date | None = el("DataZaplaty", DATE)
    znacznik_zaplaty_czesciowej: int | None = el("ZnacznikZaplatyCzesciowej", INT)
    zaplata_czesciowa: list[ZaplataCzesciowa] = el("ZaplataCzesciowa", ZaplataCzesciowa, many=True)
    termin_platnosci: list[TerminPlatnosci] = el("TerminPlatnosci", TerminPlatnosci, many=True)
    forma_platnosci: int | None = el("FormaPlatnosci", INT)
    platnosc_inna: int | None = el("PlatnoscInna", FLAG)
    opis_platnosci: str | None = el("OpisPlatnosci")
    rachunek_bankowy: list[RachunekBankowy] = el("RachunekBankowy", RachunekBankowy, many=True)
    rachunek_bankowy_faktora: list[RachunekBankowy] = el("RachunekBankowyFaktora", RachunekBankowy, many=True)
    skonto: Skonto | None = el("Skonto", Skonto)
    link_do_platnosci: str | None = el("LinkDoPlatnosci")
    ipksef: str | None = el("IPKSeF")


@_dataclass
class Umowa:
    data_umowy: datetime.date | None = el("DataUmowy", DATE)
    nr_umowy: str | None = el("NrUmowy")


@_dataclass
class ZamowienieRef:
    """``WarunkiTransakcji/Zamowienia``: reference to the buyer's order."""

    data_zamowienia: datetime.date | None = el("DataZamowienia", DATE)
    nr_zamowienia: str | None = el("NrZamowienia")


@_dataclass
class Przewoznik:
    dane_identyfikacyjne: DaneIdentyfikacyjne | None = el("DaneIdentyfikacyjne", DaneIdentyfikacyjne)
    adres_przewoznika: Adres | None = el("AdresPrzewoznika", Adres)


@_dataclass
class Transport:
    rodzaj_transportu: int | None = el("RodzajTransportu", INT)
    transport_inny: int | None = el("TransportInny", FLAG)
    opis_innego_transportu: str | None = el("OpisInnegoTransportu")
    przewoznik: Przewoznik | None = el("Przewoznik", Przewoznik)
    nr_zlecenia_transportu: str | None = el("NrZleceniaTransportu")
    opis_ladunku: int | None = el("OpisLadunku", INT)
    ladunek_inny: int | None = el("LadunekInny", FLAG)
    opis_innego_ladunku: str | None = el("OpisInnegoLadunku")
    jednostka_opakowania: str | None = el("JednostkaOpakowania")
    data_godz_rozp_transportu: datetime.datetime | None = el("DataGodzRozpTransportu", DATETIME)
    data_godz_zak_transportu: datetime.datetime | None = el("DataGodzZakTransportu", DATETIME)
    wysylka_z: Adres | None = el("WysylkaZ", Adres)
    wysylka_przez: list[Adres] = el("WysylkaPrzez", Adres, many=True)
    wysylka_do: Adres | None = el("WysylkaDo", Adres)


@_dataclass
class WarunkiTransakcji:
    umowy: list[Umowa] = el("Umowy", Umowa, many=True)
    zamowienia: list[ZamowienieRef] = el("Zamowienia", ZamowienieRef, many=True)
    nr_partii_towaru: list[str] = el("NrPartiiTowaru", STR, many=True)
    warunki_dostawy: str | None = el("WarunkiDostawy")
    kurs_umowny: Decimal | None = el("KursUmowny", DEC)
    waluta_umowna: str | None = el("WalutaUmowna")
    transport: list[Transport] = el("Transport", Transport, many=True)
    podmiot_posredniczacy: int | None = el("PodmiotPosredniczacy", FLAG)


@_dataclass
class ZamowienieWiersz:
    """Order line of an advance invoice (fields mirror :class:`FaWiersz` with a ``Z`` suffix)."""

    nr_wiersza_zam: int | None = el("NrWierszaZam", INT)
    uu_idz: str | None = el("UU_IDZ")
    p_7z: str | None = el("P_7Z")
    indeks_z: str | None = el("IndeksZ")
    gtin_z: str | None = el("GTINZ")
    pkwiu_z: str | None = el("PKWiUZ")
    cn_z: str | None = el("CNZ")
    pkob_z: str | None = el("PKOBZ")
    p_8az: str | None = el("P_8AZ")
    p_8bz: Decimal | None = el("P_8BZ", DEC)
    p_9az: Decimal | None = el("P_9AZ", DEC)
    p_11_netto_z: Decimal | None = el("P_11NettoZ", DEC)
    p_11_vat_z: Decimal | None = el("P_11VatZ", DEC)
    p_12z: str | None = el("P_12Z")
    p_12z_xii: Decimal | None = el("P_12Z_XII", DEC)
    p_12z_zal_15: int | None = el("P_12Z_Zal_15", FLAG)
    gtuz: str | None = el("GTUZ")
    procedura_z: str | None = el("ProceduraZ")
    kwota_akcyzy_z: Decimal | None = el("KwotaAkcyzyZ", DEC)
    stan_przed_z: int | None = el("StanPrzedZ", FLAG)


@_dataclass
class Zamowienie:
    """Order covered by an advance invoice (ZAL/KOR_ZAL): gross value and lines."""

    wartosc_zamowienia: Decimal | None = el("WartoscZamowienia", DEC)
    zamowienie_wiersz: list[ZamowienieWiersz] = el("ZamowienieWiersz", ZamowienieWiersz, many=True)


# ------------------------------------------------------------------------------------------------
# Fa
# ------------------------------------------------------------------------------------------------

@_dataclass
class Fa:
    """Invoice body, fields in XSD order. Tax buckets: ``p_13_x`` net, ``p_14_x`` VAT, ``p_14_xw`` VAT in PLN
    (see :func:`ksef.fa3.rates.compute_summary` / :func:`ksef.fa3.rates.apply_summary`)."""

    kod_waluty: str | None = el("KodWaluty", default="PLN")
    p_1: datetime.date | None = el("P_1", DATE)
    p_1m: str | None = el("P_1M")
    p_2: str | None = el("P_2")
    wz: list[str] = el("WZ", STR, many=True)
    p_6: datetime.date | None = el("P_6", DATE)
    okres_fa: OkresFa | None = el("OkresFa", OkresFa)
    p_13_1: Decimal | None = el("P_13_1", DEC)
    p_14_1: Decimal | None = el("P_14_1", DEC)
    p_14_1w: Decimal | None = el("P_14_1W", DEC)
    p_13_2: Decimal | None = el("P_13_2", DEC)
    p_14_2: Decimal | None = el("P_14_2", DEC)
    p_14_2w: Decimal | None = el("P_14_2W", DEC)
    p_13_3: Decimal | None = el("P_13_3", DEC)
    p_14_3: Decimal | None = el("P_14_3", DEC)
    p_14_3w: Decimal | None = el("P_14_3W", DEC)
    p_13_4: Decimal | None = el("P_13_4", DEC)
    p_14_4: Decimal | None = el("P_14_4", DEC)
    p_14_4w: Decimal | None = el("P_14_4W", DEC)
    p_13_5: Decimal | None = el("P_13_5", DEC)
    p_14_5: Decimal | None = el("P_14_5", DEC)
    p_13_6_1: Decimal | None = el("P_13_6_1", DEC)
    p_13_6_2: Decimal | None = el("P_13_6_2", DEC)
    p_13_6_3: Decimal | None = el("P_13_6_3", DEC)
    p_13_7: Decimal | None = el("P_13_7", DEC)
    p_13_8: Decimal | None = el("P_13_8", DEC)
    p_13_9: Decimal | None = el("P_13_9", DEC)
    p_13_10: Decimal | None = el("P_13_10", DEC)
    p_13_11: Decimal | None = el("P_13_11", DEC)
    p_15: Decimal | None = el("P_15", DEC)
    kurs_waluty_z: Decimal | None = el("KursWalutyZ", DEC)
    adnotacje: Adnotacje | None = el("Adnotacje", Adnotacje, factory=Adnotacje)
    rodzaj_faktury: str | None = el("RodzajFaktury", default="VAT")
    przyczyna_korekty: str | None = el("PrzyczynaKorekty")
    typ_korekty: int | None = el("TypKorekty", INT)
    dane_fa_korygowanej: list[DaneFaKorygowanej] = el("DaneFaKorygowanej", DaneFaKorygowanej, many=True)
    okres_fa_korygowanej: str | None = el("OkresFaKorygowanej")
    nr_fa_korygowany: str | None = el("NrFaKorygowany")
    podmiot1k: Podmiot1K | None = el("Podmiot1K", Podmiot1K)
    podmiot2k: list[Podmiot2K] = el("Podmiot2K", Podmiot2K, many=True)
    p_15zk: Decimal | None = el("P_15ZK", DEC)
    kurs_waluty_zk: Decimal | None = el("KursWalutyZK", DEC)
    zaliczka_czesciowa: list[ZaliczkaCzesciowa] = el("ZaliczkaCzesciowa", ZaliczkaCzesciowa, many=True)
    fp: int | None = el("FP", FLAG)
    tp: int | None = el("TP", FLAG)
    dodatkowy_opis: list[KluczWartosc] = el("DodatkowyOpis", KluczWartosc, many=True)
    faktura_zaliczkowa: list[FakturaZaliczkowa] = el("FakturaZaliczkowa", FakturaZaliczkowa, many=True)
    zwrot_akcyzy: int | None = el("ZwrotAkcyzy", FLAG)
    fa_wiersz: list[FaWiersz] = el("FaWiersz", FaWiersz, many=True)
    rozliczenie: Rozliczenie | None = el("Rozliczenie", Rozliczenie)
    platnosc: Platnosc | None = el("Platnosc", Platnosc)
    warunki_transakcji: WarunkiTransakcji | None = el("WarunkiTransakcji", WarunkiTransakcji)
    zamowienie: Zamowienie | None = el("Zamowienie", Zamowienie)


# ------------------------------------------------------------------------------------------------
# Footer and attachment
# ------------------------------------------------------------------------------------------------

@_dataclass
class Informacje:
    stopka_faktury: str | None = el("StopkaFaktury")


@_dataclass
class Rejestry:
    pelna_nazwa: str | None = el("PelnaNazwa")
    krs: str | None = el("KRS")
    regon: str | None = el("REGON")
    bdo: str | None = el("BDO")


@_dataclass
class Stopka:
    informacje: list[Informacje] = el("Informacje", Informacje, many=True)
    rejestry: list[Rejestry] = el("Rejestry", Rejestry, many=True)


@_dataclass
class MetaDane:
    z_klucz: str | None = el("ZKlucz")
    z_wartosc: str | None = el("ZWartosc")


@_dataclass
class Tekst:
    akapit: list[str] = el("Akapit", STR, many=True)


@_dataclass
class TMetaDane:
    t_klucz: str | None = el("TKlucz")
    t_wartosc: str | None = el("TWartosc")


@_dataclass
class Kol:
    """Table column: ``typ`` (attribute ``Typ``: date, datetime, dec, int, time, txt) and header ``n_kom``."""

    typ: str | None = el("Typ", attr=True)
    n_kom: str | None = el("NKom")


@_dataclass
class TNaglowek:
    kol: list[Kol] = el("Kol", Kol, many=True)


@_dataclass
class Wiersz:
    w_kom: list[str] = el("WKom", STR, many=True)


@_dataclass
class Suma:
    s_kom: list[str] = el("SKom", STR, many=True)


@_dataclass
class Tabela:
    t_meta_dane: list[TMetaDane] = el("TMetaDane", TMetaDane, many=True)
    opis: str | None = el("Opis")
    t_naglowek: TNaglowek | None = el("TNaglowek", TNaglowek)
    wiersz: list[Wiersz] = el("Wiersz", Wiersz, many=True)
    suma: Suma | None = el("Suma", Suma)


@_dataclass
class BlokDanych:
    z_naglowek: str | None = el("ZNaglowek")
    meta_dane: list[MetaDane] = el("MetaDane", MetaDane, many=True)
    tekst: Tekst | None = el("Tekst", Tekst)
    tabela: list[Tabela] = el("Tabela", Tabela, many=True)


@_dataclass
class Zalacznik:
    """Structured attachment (batch sessions only; needs e-US opt-in)."""

    blok_danych: list[BlokDanych] = el("BlokDanych", BlokDanych, many=True)


# ------------------------------------------------------------------------------------------------
# Invoice
# ------------------------------------------------------------------------------------------------

@_dataclass
class Invoice:
    """``Faktura``. ``source_form`` records the form the invoice was parsed from ('FA3' or 'FA2');
    :func:`ksef.fa3.build` always writes FA(3)."""

    naglowek: Naglowek | None = el("Naglowek", Naglowek, factory=Naglowek)
    podmiot1: Podmiot1 | None = el("Podmiot1", Podmiot1)
    podmiot2: Podmiot2 | None = el("Podmiot2", Podmiot2)
    podmiot3: list[Podmiot3] = el("Podmiot3", Podmiot3, many=True)
    podmiot_upowazniony: PodmiotUpowazniony | None = el("PodmiotUpowazniony", PodmiotUpowazniony)
    fa: Fa | None = el("Fa", Fa, factory=Fa)
    stopka: Stopka | None = el("Stopka", Stopka)
    zalacznik: Zalacznik | None = el("Zalacznik", Zalacznik)
    source_form: str = extra("FA3")


MODEL_CLASSES = tuple(
    obj for obj in list(globals().values())
    if isinstance(obj, type) and hasattr(obj, "_xml_fields_")
)
