"""UPO (Urzędowe Poświadczenie Odbioru) documents shaped like the official v4-3 samples."""
from lxml import etree

from .util import iso_warsaw_ms, to_warsaw

UPO_NS = "http://upo.schematy.mf.gov.pl/KSeF/v4-3"
RECEIVER = "Ministerstwo Finansów"
PAGE_SIZE = 10000

LOGICAL_STRUCTURES = {
    "FA (3)": "Schemat_FA(3)_v1-0E.xsd",
    "FA (2)": "Schemat_FA(2)_v1-0E.xsd",
    "FA_RR (1)": "Schemat_FA_RR(1)_v1-1E.xsd",
    "PEF (3)": "Schemat_PEF(3)_v2-1.xsd",
    "PEF_KOR (3)": "Schemat_PEF_KOR(3)_v2-1.xsd",
}
CONTEXT_ELEMENTS = {"Nip": "Nip", "InternalId": "IdWewnetrzny", "NipVatUe": "IdZlozonyVatUE",
                    "PeppolId": "IdDostawcyUslugPeppol"}


def _sub(parent, name, text=None):
    el = etree.SubElement(parent, "{%s}%s" % (UPO_NS, name))
    if text is not None:
        el.text = str(text)
    return el


def build(session, documents, page=None):
    """UPO XML bytes.

    ``session``: dict with ``referenceNumber``, ``context`` ``{type, value}``, ``formCode``
    ``{systemCode, ...}``, ``tokenRef`` or ``authDocHash``.
    ``documents``: dicts ``{sellerNip, ksefNumber, invoiceNumber, issueDate, invoicingDate (datetime),
    acquisitionDate (datetime), invoiceHash, invoicingMode}``.
    ``page``: ``(number, pages, first, last_exclusive, total)`` for session UPO pages.
    """
    nsmap = {None: UPO_NS}
    root = etree.Element("{%s}Potwierdzenie" % UPO_NS, nsmap=nsmap)
    _sub(root, "NazwaPodmiotuPrzyjmujacego", RECEIVER)
    _sub(root, "NumerReferencyjnySesji", session["referenceNumber"])
    auth = _sub(root, "Uwierzytelnienie")
    ctx = _sub(auth, "IdKontekstu")
    _sub(ctx, CONTEXT_ELEMENTS.get(session["context"]["type"], "Nip"), session["context"]["value"])
    if session.get("tokenRef"):
        _sub(auth, "NumerReferencyjnyTokenaKSeF", session["tokenRef"])
    else:
        _sub(auth, "SkrotDokumentuUwierzytelniajacego", session.get("authDocHash") or "")
    if page is not None:
        number, pages, first, last, total = page
        desc = _sub(root, "OpisPotwierdzenia")
        _sub(desc, "Strona", number)
        _sub(desc, "LiczbaStron", pages)
        _sub(desc, "ZakresDokumentowOd", first)
        _sub(desc, "ZakresDokumentowDo", last)
        _sub(desc, "CalkowitaLiczbaDokumentow", total)
    system_code = session["formCode"]["systemCode"]
    _sub(root, "NazwaStrukturyLogicznej", LOGICAL_STRUCTURES.get(system_code, system_code))
    _sub(root, "KodFormularza", system_code)
    for doc in documents:
        el = _sub(root, "Dokument")
        _sub(el, "NipSprzedawcy", doc["sellerNip"])
        _sub(el, "NumerKSeFDokumentu", doc["ksefNumber"])
        _sub(el, "NumerFaktury", doc["invoiceNumber"])
        _sub(el, "DataWystawieniaFaktury", doc["issueDate"])
        _sub(el, "DataPrzeslaniaDokumentu", iso_warsaw_ms(doc["invoicingDate"]))
        _sub(el, "DataNadaniaNumeruKSeF", iso_warsaw_ms(doc["acquisitionDate"]))
        _sub(el, "SkrotDokumentu", doc["invoiceHash"])
        _sub(el, "TrybWysylki", doc["invoicingMode"])
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def warsaw_date(moment):
    return to_warsaw(moment).date()
