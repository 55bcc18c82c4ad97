"""Namespace-agnostic extraction of KSeF metadata from FA(2), FA(3) and FA_RR invoices (lxml)."""
from decimal import Decimal, InvalidOperation

from lxml import etree

PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=False, huge_tree=False)

INVOICE_TYPES = {
    "VAT": "Vat", "KOR": "Kor", "ZAL": "Zal", "ROZ": "Roz", "UPR": "Upr", "KOR_ZAL": "KorZal",
    "KOR_ROZ": "KorRoz", "VAT_RR": "VatRr", "KOR_VAT_RR": "KorVatRr",
}


class ExtractError(ValueError):
    pass


def _local(el):
    tag = el.tag
    if not isinstance(tag, str):
        return None
    return tag.rsplit("}", 1)[-1]


def child(el, *names):
    """Follow a path of local names (first match at each step)."""
    for name in names:
        if el is None:
            return None
        found = None
        for sub in el:
            if _local(sub) == name:
                found = sub
                break
        el = found
    return el


def children(el, name):
    if el is None:
        return []
    return [sub for sub in el if _local(sub) == name]


def text(el, *names):
    node = child(el, *names) if names else el
    if node is None or node.text is None:
        return None
    value = node.text.strip()
    return value or None


def _dec(value):
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def _num(value):
    return float(value.quantize(Decimal("0.01"))) if value is not None else 0.0


def parse(xml_bytes):
    try:
        return etree.fromstring(xml_bytes, PARSER)
    except etree.XMLSyntaxError as exc:
        raise ExtractError("XML is not well-formed: %s" % exc) from None


def form_code(root):
    """``(systemCode, schemaVersion, value)`` from Naglowek/KodFormularza, or ``None``."""
    node = child(root, "Naglowek", "KodFormularza")
    if node is None:
        return None
    return node.get("kodSystemowy"), node.get("wersjaSchemy"), (node.text or "").strip()


def _party_identifier(dane):
    """Identifier of Podmiot2/Podmiot3 ``DaneIdentyfikacyjne`` as (type, value)."""
    if dane is None:
        return "None", None
    nip = text(dane, "NIP")
    if nip:
        return "Nip", nip
    idwew = text(dane, "IDWew")
    if idwew:
        return "InternalId", idwew
    nr_ue = text(dane, "NrVatUE")
    if nr_ue:
        return "VatUe", (text(dane, "KodUE") or "") + nr_ue
    nr_id = text(dane, "NrID")
    if nr_id:
        return "Other", ((text(dane, "KodKraju") or "") + nr_id)[:50]
    return "None", None


def extract(root):
    """Return a dict of business data of the invoice (raises :class:`ExtractError`)."""
    name = _local(root)
    if name != "Faktura":
        raise ExtractError("root element is %r, expected Faktura" % name)
    code = form_code(root)
    p1 = child(root, "Podmiot1", "DaneIdentyfikacyjne")
    p2 = child(root, "Podmiot2", "DaneIdentyfikacyjne")
    seller_nip = text(p1, "NIP")
    if not seller_nip:
        raise ExtractError("Podmiot1/DaneIdentyfikacyjne/NIP is missing")
    rr = child(root, "FakturaRR")
    fa = rr if rr is not None else child(root, "Fa")
    if fa is None:
        raise ExtractError("Fa element is missing")
    if rr is not None:
        issue_date = text(fa, "P_4B")
        number = text(fa, "P_4C")
        net = _dec(text(fa, "P_11_1")) or Decimal(0)
        vat = _dec(text(fa, "P_11_2")) or Decimal(0)
        gross = _dec(text(fa, "P_12_1")) or Decimal(0)
        self_billing = False
    else:
        issue_date = text(fa, "P_1")
        number = text(fa, "P_2")
        net = Decimal(0)
        vat_plain, vat_pln = {}, {}
        for el in fa:
            tag = _local(el) or ""
            value = _dec((el.text or "").strip()) or Decimal(0)
            if tag.startswith("P_13_"):
                net += value
            elif tag.startswith("P_14_") and tag.endswith("W"):
                vat_pln[tag[:-1]] = value
            elif tag.startswith("P_14_"):
                vat_plain[tag] = value
        # vatAmount is in PLN: P_14_xW where given (foreign currency), else P_14_x
        vat = sum((vat_pln.get(k, v) for k, v in vat_plain.items()), Decimal(0))
        vat += sum((v for k, v in vat_pln.items() if k not in vat_plain), Decimal(0))
        gross = _dec(text(fa, "P_15")) or Decimal(0)
        self_billing = text(fa, "Adnotacje", "P_17") == "1"
    kind = text(fa, "RodzajFaktury")
    if not issue_date or not number or not kind:
        raise ExtractError("issue date, invoice number or RodzajFaktury is missing")
    buyer_type, buyer_value = _party_identifier(p2)
    thirds = []
    for p3 in children(root, "Podmiot3"):
        dane = child(p3, "DaneIdentyfikacyjne")
        t_type, t_value = _party_identifier(dane)
        role = text(p3, "Rola")
        thirds.append({
            "identifier": {"type": t_type, "value": t_value} if t_value else {"type": t_type},
            "name": text(dane, "Nazwa"),
            "role": int(role) if role and role.isdigit() else 0,
        })
    authorized = None
    pu = child(root, "PodmiotUpowazniony")
    if pu is not None:
        pu_dane = child(pu, "DaneIdentyfikacyjne")
        pu_nip = text(pu_dane, "NIP")
        role = text(pu, "RolaPU")
        if pu_nip:
            authorized = {"nip": pu_nip, "name": text(pu_dane, "Nazwa"),
                          "role": int(role) if role and role.isdigit() else 0}
    return {
        "form_code": code,
        "seller_nip": seller_nip,
        "seller_name": text(p1, "Nazwa"),
        "buyer_type": buyer_type,
        "buyer_value": buyer_value,
        "buyer_name": text(p2, "Nazwa"),
        "issue_date": issue_date,
        "invoice_number": number,
        "kind": kind,
        "invoice_type": INVOICE_TYPES.get(kind, kind),
        "currency": text(fa, "KodWaluty") or "PLN",
        "net": _num(net),
        "vat": _num(vat),
        "gross": _num(gross),
        "self_billing": self_billing,
        "has_attachment": child(root, "Zalacznik") is not None,
        "third_subjects": thirds,
        "authorized": authorized,
        "corrected_ksef_numbers": [text(d, "NrKSeFFaKorygowanej") for d in children(fa, "DaneFaKorygowanej")
                                   if text(d, "NrKSeFFaKorygowanej")],
    }
