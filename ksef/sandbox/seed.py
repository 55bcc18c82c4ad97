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
from xml.sax.saxutils import escape

from lxml import etree

from ..numbers import generate_ksef_number, nip_check_digit
from . import extract
from .invoicing import FORMS, InvoiceRejected, _status
from .util import iso, now, reference_number, to_warsaw

FA3_NS = "http://crd.gov.pl/wzor/2025/06/25/13775/"
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
        nip, name, address, bank = seller
        issue = issue or self.today
        prefix = {"VAT": "FV", "KOR": "KOR", "ZAL": "FZAL", "ROZ": "FROZ", "UPR": "FU"}[kind]
        number = self.number(prefix, nip, issue)
        rate_eur = Decimal("4.2512")
        if kind == "ZAL":
            lines = []
            order = self.lines(self.rng.randint(1, 3))
            order_net = sum(li["net"] for li in order)
            order_vat = sum(li["vat"] for li in order)
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
        total = sum(n + v for n, v in buckets.values())
        x = []
        x.append('<?xml version="1.0" encoding="UTF-8"?>\n<Faktura xmlns="%s">' % FA3_NS)
        x.append('<Naglowek><KodFormularza kodSystemowy="FA (3)" wersjaSchemy="1-0E">FA</KodFormularza>'
                 "<WariantFormularza>3</WariantFormularza><DataWytworzeniaFa>%sT08:00:00Z</DataWytworzeniaFa>"
                 "<SystemInfo>KSeF sandbox seed</SystemInfo></Naglowek>" % issue.isoformat())
        x.append("<Podmiot1><DaneIdentyfikacyjne><NIP>%s</NIP><Nazwa>%s</Nazwa></DaneIdentyfikacyjne>"
                 "<Adres><KodKraju>PL</KodKraju><AdresL1>%s</AdresL1></Adres>"
                 "<DaneKontaktowe><Email>faktury@%s.example.pl</Email></DaneKontaktowe></Podmiot1>"
                 % (nip, escape(name), escape(address), nip))
        x.append("<Podmiot2><DaneIdentyfikacyjne><NIP>%s</NIP><Nazwa>Nabywca %s Sp. z o.o.</Nazwa>"
                 "</DaneIdentyfikacyjne><Adres><KodKraju>PL</KodKraju><AdresL1>ul. Zakupowa 1, 00-001 Warszawa"
                 "</AdresL1></Adres><JST>2</JST><GV>2</GV></Podmiot2>" % (self.buyer, self.buyer))
        if third:
            x.append("<Podmiot3><DaneIdentyfikacyjne><NIP>%s</NIP><Nazwa>Odbiorca %s</Nazwa></DaneIdentyfikacyjne>"
                     "<Adres><KodKraju>PL</KodKraju><AdresL1>ul. Magazynowa 7, 00-002 Warszawa</AdresL1></Adres>"
                     "<Rola>2</Rola></Podmiot3>" % (third, third))
        x.append("<Fa><KodWaluty>%s</KodWaluty><P_1>%s</P_1><P_1M>Warszawa</P_1M><P_2>%s</P_2>"
                 % (currency, issue.isoformat(), escape(number)))
        if kind != "KOR":
            x.append("<P_6>%s</P_6>" % issue.isoformat())
        for bucket in sorted(buckets):
            n, v = buckets[bucket]
            x.append("<P_13_%d>%s</P_13_%d><P_14_%d>%s</P_14_%d>" % (bucket, _money(n), bucket, bucket, _money(v),
                                                                     bucket))
            if currency != "PLN":
                x.append("<P_14_%dW>%s</P_14_%dW>" % (bucket, _money(v * rate_eur), bucket))
        x.append("<P_15>%s</P_15>" % _money(total))
        if kind == "ZAL" and currency != "PLN":
            x.append("<KursWalutyZ>%s</KursWalutyZ>" % rate_eur)
        x.append("<Adnotacje><P_16>2</P_16><P_17>%s</P_17><P_18>2</P_18><P_18A>2</P_18A><Zwolnienie><P_19N>1"
                 "</P_19N></Zwolnienie><NoweSrodkiTransportu><P_22N>1</P_22N></NoweSrodkiTransportu><P_23>2</P_23>"
                 "<PMarzy><P_PMarzyN>1</P_PMarzyN></PMarzy></Adnotacje>" % ("1" if self_billing else "2"))
        x.append("<RodzajFaktury>%s</RodzajFaktury>" % kind)
        if kind == "KOR" and corrected:
            x.append("<PrzyczynaKorekty>Rabat posprzedażowy</PrzyczynaKorekty><TypKorekty>2</TypKorekty>"
                     "<DaneFaKorygowanej><DataWystFaKorygowanej>%s</DataWystFaKorygowanej><NrFaKorygowanej>%s"
                     "</NrFaKorygowanej><NrKSeF>1</NrKSeF><NrKSeFFaKorygowanej>%s</NrKSeFFaKorygowanej>"
                     "</DaneFaKorygowanej>" % (corrected["issueDate"], escape(corrected["invoiceNumber"]),
                                              corrected["ksefNumber"]))
        if kind == "ROZ" and advance:
            x.append("<FakturaZaliczkowa><NrKSeFFaZaliczkowej>%s</NrKSeFFaZaliczkowej></FakturaZaliczkowa>"
                     % advance["ksefNumber"])
        for li in lines:
            x.append("<FaWiersz><NrWierszaFa>%d</NrWierszaFa><P_7>%s</P_7><P_8A>szt.</P_8A><P_8B>%s</P_8B>"
                     "<P_9A>%s</P_9A><P_11>%s</P_11><P_12>%s</P_12>"
                     % (li["no"], escape(li["name"]), li["qty"], _money(li["price"]), _money(li["net"]), li["rate"]))
            if currency != "PLN":
                x.append("<KursWaluty>%s</KursWaluty>" % rate_eur)
            x.append("</FaWiersz>")
        due = issue + datetime.timedelta(days=self.rng.choice((7, 14, 30)))
        x.append("<Platnosc><TerminPlatnosci><Termin>%s</Termin></TerminPlatnosci><FormaPlatnosci>6</FormaPlatnosci>"
                 "<RachunekBankowy><NrRB>%s</NrRB><NazwaBanku>Bank Testowy S.A.</NazwaBanku></RachunekBankowy>"
                 "</Platnosc>" % (due.isoformat(), nrb(bank, self.rng)))
        if kind == "ZAL":
            order_total = order_net + order_vat
            x.append("<Zamowienie><WartoscZamowienia>%s</WartoscZamowienia>" % _money(order_total))
            for i, li in enumerate(order, 1):
                x.append("<ZamowienieWiersz><NrWierszaZam>%d</NrWierszaZam><P_7Z>%s</P_7Z><P_8AZ>szt.</P_8AZ>"
                         "<P_8BZ>%s</P_8BZ><P_9AZ>%s</P_9AZ><P_11NettoZ>%s</P_11NettoZ><P_11VatZ>%s</P_11VatZ>"
                         "<P_12Z>%s</P_12Z></ZamowienieWiersz>"
                         % (i, escape(li["name"]), li["qty"], _money(li["price"]), _money(li["net"]),
                            _money(li["vat"]), li["rate"]))
            x.append("</Zamowienie>")
        x.append("</Fa></Faktura>")
        return "".join(x).encode("utf-8")


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
                    xml = gen.document("KOR", seller, corrected=rng.choice(mine["VAT"]), issue=issue)
                elif kind == "ROZ" and mine["ZAL"]:
                    xml = gen.document("ROZ", seller, advance=mine["ZAL"].pop(0), issue=issue)
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
