"""Seeding the sandbox with purchase invoices addressed to a buyer NIP.

* Generated invoices (default; works without any spec files): valid FA(3) documents of several sellers
  (valid NIPs and bank accounts) mixing VAT, KOR (correcting seeded originals by KSeF number), ZAL, ROZ
  (settling seeded advance invoices), UPR, EUR invoices with VAT in PLN, self-billing (``P_17=1``) and a
  third party (``Podmiot3``). Issue dates are today or up to a week back (those become ``Offline``, as KSeF
  marks them).
* XML files (``from_dir`` / ``xml_documents``): placeholders ``#nip#``, ``#buyer_nip#``, ``#invoice_number#``,
  ``#issue_date#``... are filled in, the buyer (``Podmiot2``) becomes the given NIP, an issue date in the
  future is moved to today and a number already used by the same seller gets a suffix.

Every document goes through the same validation as an invoice sent by a client (XSD included) and is
stored as accepted in a closed online session of its seller.
"""
import datetime
import glob
import os
import random
import re
from decimal import ROUND_HALF_UP, Decimal

from lxml import etree

from ..numbers import generate_ksef_number, nip_check_digit
from . import extract
from .invoicing import FORMS, InvoiceRejected, _status
from .util import iso, now, reference_number, to_warsaw

SELLERS = (
    ("526104383", "Hurtownia Papiernicza PAPIRUS Sp. z o.o.", "ul. Składowa 12, 61-897 Poznań", "10201026"),
    ("779241386", "Drukarnia Offsetowa Kolor S.A.", "ul. Drukarska 5, 31-416 Kraków", "11402004"),
    ("951230475", "Biuro Rachunkowe Saldo Anna Nowak", "ul. Księgowa 3/4, 00-950 Warszawa", "10901014"),
    ("677003254", "Transport i Spedycja TIR-EX Sp. z o.o.", "ul. Portowa 88, 80-561 Gdańsk", "12401037"),
    ("854215632", "Energia Pomorze Sp. z o.o.", "ul. Elektryczna 1, 70-001 Szczecin", "10205011"),
    ("113284955", "Software House Bajt Sp. k.", "ul. Programistów 42, 50-001 Wrocław", "11602202"),
)
RATES = (("23", 1, Decimal("0.23")), ("8", 2, Decimal("0.08")), ("5", 3, Decimal("0.05")))
PRODUCTS = ("Papier biurowy A4 80g", "Toner do drukarki", "Usługa transportowa", "Abonament serwisowy",
            "Licencja oprogramowania", "Energia elektryczna", "Usługa księgowa", "Segregatory 5 cm",
            "Konsultacje wdrożeniowe", "Materiały promocyjne", "Książki fachowe", "Artykuły spożywcze")
CENT = Decimal("0.01")


def _nip(first9):
    digit = nip_check_digit(first9)
    if digit is None:
        raise ValueError("no valid NIP starts with %s" % first9)
    return first9 + str(digit)


def _valid_prefix(first9):
    while nip_check_digit(first9) is None:
        first9 = str(int(first9) + 1)
    return first9


def nrb(bank8, rng):
    """A valid Polish account number (NRB, 26 digits, ISO 7064 check digits)."""
    account = bank8 + "".join(str(rng.randint(0, 9)) for _ in range(16))
    number = int(account + "252100")  # "PL" = 25 21, then "00"
    check = 98 - number % 97
    return "%02d%s" % (check, account)


def sellers():
    return [(_nip(_valid_prefix(p)), name, addr, bank) for p, name, addr, bank in SELLERS]


def _money(value):
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


class _Generator:
    def __init__(self, buyer_nip, rng, today):
        self.buyer = buyer_nip
        self.rng = rng
        self.today = today
        self.sellers = sellers()
        self.counter = 0
        self.token = "%04X" % rng.randint(0, 0xFFFF)

    def number(self, prefix, seller_nip, issue):
        self.counter += 1
        return "%s/%s/%s/%05d/%s%04X" % (prefix, seller_nip[-4:], issue.strftime("%Y/%m"), self.counter,
                                         self.token, self.rng.randint(0, 0xFFFF))

    def lines(self, count, small=False, negative=False):
        out = []
        for i in range(count):
            rate, bucket, factor = RATES[self.rng.randrange(len(RATES))] if not small else RATES[0]
            qty = Decimal(self.rng.randint(1, 3 if small else 20))
            price = Decimal(self.rng.randint(100, 4000 if small else 250000)) / 100
            if negative:
                price = -price
            net = (qty * price).quantize(CENT, rounding=ROUND_HALF_UP)
            out.append({"no": i + 1, "name": self.rng.choice(PRODUCTS), "qty": qty, "price": price, "net": net,
                        "rate": rate, "bucket": bucket, "vat": (net * factor).quantize(CENT, rounding=ROUND_HALF_UP)})
        return out

    def document(self, kind, seller, *, currency="PLN", self_billing=False, third=None, corrected=None,
                 advance=None, issue=None):
        """FA(3) XML bytes built with the :mod:`ksef.fa3` model."""
        from .. import fa3

        nip, name, address, bank = seller
        issue = issue or self.today
        prefix = {"VAT": "FV", "KOR": "KOR", "ZAL": "FZAL", "ROZ": "FROZ", "UPR": "FU"}[kind]
        number = self.number(prefix, nip, issue)
        rate_eur = Decimal("4.2512")
        order = []
        if kind == "ZAL":
            lines = []
            order = self.lines(self.rng.randint(1, 3))
            share = Decimal(self.rng.choice((20, 30, 50))) / 100
            buckets = {}
            for li in order:
                b = buckets.setdefault(li["bucket"], [Decimal(0), Decimal(0)])
                b[0] += (li["net"] * share).quantize(CENT)
                b[1] += (li["vat"] * share).quantize(CENT)
        else:
            lines = self.lines(1 if kind == "UPR" else self.rng.randint(1, 4), small=kind == "UPR",
                               negative=kind == "KOR")
            buckets = {}
            for li in lines:
                b = buckets.setdefault(li["bucket"], [Decimal(0), Decimal(0)])
                b[0] += li["net"]
                b[1] += li["vat"]
        if kind == "ROZ" and advance is not None:
            for b in buckets.values():
                b[0] = (b[0] * Decimal("0.6")).quantize(CENT)
                b[1] = (b[1] * Decimal("0.6")).quantize(CENT)
        fa = fa3.Fa(kod_waluty=currency, p_1=issue, p_1m="Warszawa", p_2=number,
                    p_6=None if kind == "KOR" else issue, rodzaj_faktury=kind)
        for bucket, (net, vat) in buckets.items():
            setattr(fa, "p_13_%d" % bucket, net)
            setattr(fa, "p_14_%d" % bucket, vat)
            if currency != "PLN":
                setattr(fa, "p_14_%dw" % bucket, (vat * rate_eur).quantize(CENT, rounding=ROUND_HALF_UP))
        fa.p_15 = sum((n + v for n, v in buckets.values()), Decimal(0))
        if kind == "ZAL" and currency != "PLN":
            fa.kurs_waluty_z = rate_eur
        fa.adnotacje.p_17 = 1 if self_billing else 2
        if kind == "KOR" and corrected:
            fa.przyczyna_korekty = "Rabat posprzedażowy"
            fa.typ_korekty = 2
            fa.dane_fa_korygowanej = [fa3.DaneFaKorygowanej(
                data_wyst_fa_korygowanej=datetime.date.fromisoformat(corrected["issueDate"]),
                nr_fa_korygowanej=corrected["invoiceNumber"], nr_ksef=1,
                nr_ksef_fa_korygowanej=corrected["ksefNumber"])]
        if kind == "ROZ" and advance:
            fa.faktura_zaliczkowa = [fa3.FakturaZaliczkowa(nr_ksef_fa_zaliczkowej=advance["ksefNumber"])]
        fa.fa_wiersz = [fa3.FaWiersz(nr_wiersza_fa=li["no"], p_7=li["name"], p_8a="szt.", p_8b=li["qty"],
                                     p_9a=li["price"], p_11=li["net"], p_12=li["rate"],
                                     kurs_waluty=rate_eur if currency != "PLN" else None) for li in lines]
        due = issue + datetime.timedelta(days=self.rng.choice((7, 14, 30)))
        fa.platnosc = fa3.Platnosc(termin_platnosci=[fa3.TerminPlatnosci(termin=due)], forma_platnosci=6,
                                   rachunek_bankowy=[fa3.RachunekBankowy(nr_rb=nrb(bank, self.rng),
                                                                         nazwa_banku="Bank Testowy S.A.")])
        if kind == "ZAL":
            fa.zamowienie = fa3.Zamowienie(
                wartosc_zamowienia=sum((li["net"] + li["vat"] for li in order), Decimal(0)),
                zamowienie_wiersz=[fa3.ZamowienieWiersz(
                    nr_wiersza_zam=i, p_7z=li["name"], p_8az="szt.", p_8bz=li["qty"], p_9az=li["price"],
                    p_11_netto_z=li["net"], p_11_vat_z=li["vat"], p_12z=li["rate"]) for i, li in enumerate(order, 1)])
        invoice = fa3.Invoice(
            naglowek=fa3.Naglowek(data_wytworzenia_fa=datetime.datetime.combine(
                issue, datetime.time(8), datetime.timezone.utc), system_info="KSeF sandbox seed"),
            podmiot1=fa3.Podmiot1(dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(nip=nip, nazwa=name),
                                  adres=fa3.Adres(adres_l1=address),
                                  dane_kontaktowe=[fa3.DaneKontaktowe(email="faktury@%s.example.pl" % nip)]),
            podmiot2=fa3.Podmiot2(dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(
                nip=self.buyer, nazwa="Nabywca %s Sp. z o.o." % self.buyer),
                adres=fa3.Adres(adres_l1="ul. Zakupowa 1, 00-001 Warszawa")),
            fa=fa)
        if kind not in ("ZAL", "ROZ"):
            fa3.apply_summary(invoice)  # buckets, VAT in PLN and P_15 exactly as the FA(3) rules compute them
        if third:
            invoice.podmiot3 = [fa3.Podmiot3(
                dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(nip=third, nazwa="Odbiorca %s" % third),
                adres=fa3.Adres(adres_l1="ul. Magazynowa 7, 00-002 Warszawa"), rola=2)]
        return fa3.build(invoice, pretty=False)


def generate(buyer_nip, count, seed=None):
    """Yield ``(kind, builder)`` plans; builders get the list of already accepted metadata."""
    rng = random.Random(seed)
    today = to_warsaw(now()).date()
    gen = _Generator(buyer_nip, rng, today)
    return gen, rng


def _session_for(sandbox, seller_nip, form, form_key, cache):
    key = (seller_nip, form_key)
    if key in cache:
        return cache[key]
    moment = now()
    ref = reference_number("SO", moment)
    session = {"referenceNumber": ref, "kind": "Online", "context": {"type": "Nip", "value": seller_nip},
               "subject": {"type": "Nip", "value": seller_nip}, "authRef": None, "tokenRef": None,
               "authDocHash": "%s=" % ("A" * 43), "formCode": form, "formKey": form_key, "key": None, "iv": "",
               "keyError": False, "dateCreated": iso(moment), "dateUpdated": iso(moment),
               "validUntil": iso(moment), "closedAt": moment.timestamp(), "nextOrdinal": 1,
               "status": _status({200: "Sesja interaktywna przetworzona pomyślnie"}, 200), "upoPages": [],
               "seeded": True}
    cache[key] = session
    return session


def _store(sandbox, xml, session, c):
    from .. import crypto
    moment = now()
    inv_ref = reference_number("EE", moment)
    result = sandbox._process(c, session, xml, offline=False, invoicing=moment, acquisition=moment, online=False,
                              invoice_ref=inv_ref)
    ordinal = session["nextOrdinal"]
    session["nextOrdinal"] += 1
    sandbox._record(c, session, ordinal, inv_ref, crypto.sha256_b64(xml), moment, 0, result)
    return result


def _save_sessions(sandbox, sessions):
    for session in sessions.values():
        sandbox._save_session(session)


def seed_invoices(sandbox, buyer_nip, count=10, *, seed=None, from_dir=None, xml_documents=(), seller_nips=None):
    """Store purchase invoices for ``buyer_nip``; returns their KSeF numbers (raises ValueError on rejects)."""
    if not re.fullmatch(r"\d{10}", str(buyer_nip or "")):
        raise ValueError("buyer NIP must have 10 digits")
    numbers = []
    sessions = {}
    gen, rng = generate(buyer_nip, count, seed)
    if seller_nips:
        gen.sellers = [(nip, "Sprzedawca %s" % nip, "ul. Testowa 1, 00-001 Warszawa", "10201026")
                       for nip in seller_nips]
    accepted = {}
    form_fa3 = {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"}
    plan = []
    for i in range(int(count or 0)):
        roll = rng.random()
        kind = ("VAT" if roll < 0.55 else "KOR" if roll < 0.65 else "ZAL" if roll < 0.73 else "ROZ"
                if roll < 0.80 else "UPR" if roll < 0.85 else "EUR" if roll < 0.95 else "SELF")
        if i < 3:
            kind = ("VAT", "ZAL", "KOR")[i]
        plan.append(kind)
    chunk = 200
    for start in range(0, len(plan), chunk):
        with sandbox.store.tx() as c:
            for kind in plan[start:start + chunk]:
                seller = rng.choice(gen.sellers)
                mine = accepted.setdefault(seller[0], {"VAT": [], "ZAL": []})
                back = 0 if rng.random() < 0.7 else rng.randint(1, 7)
                issue = gen.today - datetime.timedelta(days=back)
                third = None
                if rng.random() < 0.05:
                    third = gen.sellers[(gen.sellers.index(seller) + 1) % len(gen.sellers)][0]
                if kind == "KOR" and mine["VAT"]:
                    original = rng.choice(mine["VAT"])
                    issue = max(issue, datetime.date.fromisoformat(original["issueDate"]))
                    xml = gen.document("KOR", seller, corrected=original, issue=issue)
                elif kind == "ROZ" and mine["ZAL"]:
                    advance = mine["ZAL"].pop(0)
                    issue = max(issue, datetime.date.fromisoformat(advance["issueDate"]))
                    xml = gen.document("ROZ", seller, advance=advance, issue=issue)
                elif kind in ("ZAL", "UPR"):
                    xml = gen.document(kind, seller, issue=issue)
                elif kind == "EUR":
                    xml = gen.document("VAT", seller, currency="EUR", issue=issue, third=third)
                elif kind == "SELF":
                    xml = gen.document("VAT", seller, self_billing=True, issue=issue)
                else:
                    kind = "VAT"
                    xml = gen.document("VAT", seller, issue=issue, third=third)
                session = _session_for(sandbox, seller[0], form_fa3, "FA3", sessions)
                result = _store(sandbox, xml, session, c)
                if isinstance(result, InvoiceRejected):
                    raise ValueError("generated invoice rejected (%s): %s" % (result.code, result.details[:3]))
                numbers.append(result["ksefNumber"])
                if kind in ("VAT", "ZAL"):
                    mine[kind].append(result)
            _save_sessions(sandbox, sessions)
    documents = list(xml_documents or ())
    if from_dir:
        for path in sorted(glob.glob(os.path.join(from_dir, "**", "*.xml"), recursive=True)):
            with open(path, "rb") as fh:
                documents.append(fh.read())
    if documents:
        with sandbox.store.tx() as c:
            for raw in documents:
                xml, form, form_key = prepare_document(sandbox, raw, buyer_nip, gen, rng)
                seller_nip = extract.text(extract.child(extract.parse(xml), "Podmiot1", "DaneIdentyfikacyjne"), "NIP")
                session = _session_for(sandbox, seller_nip, form, form_key, sessions)
                result = _store(sandbox, xml, session, c)
                if isinstance(result, InvoiceRejected):
                    raise ValueError("document rejected (%s): %s" % (result.code, result.details[:3]))
                numbers.append(result["ksefNumber"])
            _save_sessions(sandbox, sessions)
    return numbers


def prepare_document(sandbox, raw, buyer_nip, gen, rng):
    """Fill placeholders, address the document to ``buyer_nip``, keep it unique; returns (xml, form, key)."""
    seller = rng.choice(gen.sellers)
    today = gen.today.isoformat()
    other = gen.sellers[(gen.sellers.index(seller) + 1) % len(gen.sellers)][0]
    text = raw.decode("utf-8-sig")
    replacements = {
        "#nip#": seller[0], "#supplier_nip#": seller[0], "#selfInvocingNip#": seller[0], "#buyer_nip#": buyer_nip,
        "#nipOdbiorca#": other, "#issue_date#": today, "#invoicing_date#": today,
        "#due_date#": (gen.today + datetime.timedelta(days=14)).isoformat(), "#iban#": nrb(seller[3], rng),
        "#ksef_number#": generate_ksef_number(seller[0], gen.today),
    }
    for key, value in replacements.items():
        text = text.replace(key, value)
    text = re.sub("#invoice_number#", lambda _m: gen.number("FV", seller[0], gen.today), text)
    root = etree.fromstring(text.encode("utf-8"), extract.PARSER)
    ns = etree.QName(root).namespace
    q = (lambda name: "{%s}%s" % (ns, name)) if ns else (lambda name: name)
    dane = extract.child(root, "Podmiot2", "DaneIdentyfikacyjne")
    if dane is not None:
        nip_el = extract.child(dane, "NIP")
        if nip_el is None:
            for el in list(dane):
                if extract._local(el) in ("KodUE", "NrVatUE", "KodKraju", "NrID", "BrakID"):
                    dane.remove(el)
            nip_el = etree.Element(q("NIP"))
            dane.insert(0, nip_el)
        nip_el.text = buyer_nip
    fa = extract.child(root, "Fa") if extract.child(root, "Fa") is not None else extract.child(root, "FakturaRR")
    date_tag, number_tag = ("P_4B", "P_4C") if extract._local(fa) == "FakturaRR" else ("P_1", "P_2")
    date_el = extract.child(fa, date_tag)
    if date_el is not None and (date_el.text or "").strip() > today:
        date_el.text = today
    code = extract.form_code(root)
    form_key = FORMS.get(tuple(code) if code else None)
    if form_key is None:
        raise ValueError("unsupported form %s" % (code,))
    meta = extract.extract(root)
    dup = sandbox.store.q1("SELECT 1 FROM invoices WHERE seller_nip=? AND kind=? AND invoice_number=?",
                           (meta["seller_nip"], meta["kind"], meta["invoice_number"]))
    if dup:
        number_el = extract.child(fa, number_tag)
        number_el.text = "%s/%04X" % (number_el.text.strip()[:240], rng.randint(0, 0xFFFF))
    xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    form = {"systemCode": code[0], "schemaVersion": code[1], "value": code[2]}
    return xml, form, form_key
