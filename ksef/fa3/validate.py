"""Validation of FA(3) invoices: official XSD + the business rules the XSD cannot express.

:func:`validate` accepts an :class:`~ksef.fa3.model.Invoice` (it is built first) or XML bytes (FA(3) or
FA(2)) and returns a list of :class:`~ksef.errors.ValidationIssue` — never raises for bad input. Each issue
has the element path (``Faktura/Fa/FaWiersz[3]/P_12``; ``[n]`` for elements that may repeat), a stable
``code``, the value and English + Polish messages. ``severity`` is ``error`` (KSeF rejects it, or the
document is legally/arithmetically wrong) or ``warning`` (suspicious; KSeF accepts it).

Codes of the business rules:

``file_too_large``, ``bom``, ``encoding``, ``processing_instruction``, ``discouraged_character``,
``fa2_form`` (warning), ``nip_checksum``, ``ksef_number``, ``p1_in_future``, ``period_order``,
``corrected_date_after_issue``, ``due_date_before_issue`` (w), ``total_mismatch``, ``bucket_mismatch``,
``bucket_missing``, ``bucket_without_lines``, ``vat_pln_mismatch`` (w), ``vat_pln_missing``,
``vat_pln_not_allowed``, ``exchange_rate_on_pln`` (w), ``correction_reference_missing``,
``correction_data_not_allowed``, ``before_row_not_allowed``, ``exemption_missing``, ``exemption_unused`` (w),
``margin_missing``, ``margin_unused`` (w), ``reverse_charge_annotation`` (w), ``split_payment`` (w),
``self_billing_buyer`` (w), ``jst_recipient_missing`` (w), ``gv_recipient_missing`` (w), ``share_without_role`` (w),
``intra_eu_buyer`` (w), ``lines_missing``, ``order_missing``, ``advance_invoice_missing``,
``order_total_mismatch`` (w), ``settlement_sum_mismatch``, ``settlement_total_mismatch`` (w),
``fa2_only_data``, plus ``xsd`` / ``xml_malformed`` / ``unknown_form`` from :mod:`ksef.schemas` and
``bad_value`` / ``xml_parse`` for values that cannot be read at all.
"""
import datetime
import re
from decimal import Decimal

from .. import numbers, schemas
from ..errors import InvoiceValidationError, KsefError, ValidationIssue, XmlParseError
from . import model as m
from . import rates
from .codec import build_tree, format_decimal, parse, serialize

MAX_SIZE = 1_000_000
MAX_SIZE_WITH_ATTACHMENT = 3_000_000
KSEF_2_START = datetime.date(2026, 2, 1)
SPLIT_PAYMENT_THRESHOLD = Decimal(15000)
TOLERANCE = Decimal("0.01")

# W3C "discouraged" code points that KSeF refuses (faktury/weryfikacja-faktury.md)
_DISCOURAGED_RE = re.compile(
    "[\x7f-\x84\x86-\x9f\ufdd0-\ufdef%s]" % "".join(
        "%s%s" % (chr(plane * 0x10000 + 0xFFFE), chr(plane * 0x10000 + 0xFFFF)) for plane in range(1, 17)))
_DECL_ENCODING_RE = re.compile(rb"^<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_PI_RE = re.compile(rb"<\?(?!xml[\s?])")


def warsaw_today():
    """Today's date in Poland (Europe/Warsaw), the reference for "issue date in the future"."""
    try:
        import zoneinfo

        return datetime.datetime.now(zoneinfo.ZoneInfo("Europe/Warsaw")).date()
    except (ImportError, KeyError, OSError):  # no tz database: UTC is at most 2 hours off
        return datetime.datetime.now(datetime.timezone.utc).date()


def _issue(path, code, en, pl, *, value=None, severity="error", **params):
    if value is not None and not isinstance(value, str):
        value = format_decimal(value) if isinstance(value, Decimal) else str(value)
    return ValidationIssue(path=path, code=code, message_en=en, message_pl=pl, value=value, severity=severity,
                           params=params)


def _fmt(value):
    return "-" if value is None else (format_decimal(value) if isinstance(value, Decimal) else str(value))


# ------------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------------

def validate(invoice_or_xml, today=None, schema_dir=None, cache_dir=None):
    """Validate an :class:`~ksef.fa3.model.Invoice` or FA(3)/FA(2) XML bytes; returns a list of issues.

    ``today`` (a date, default: today in Europe/Warsaw) is the reference for "issue date in the future".
    Raises only :class:`~ksef.errors.SchemaUnavailableError` when the official schemas cannot be found.
    """
    if isinstance(invoice_or_xml, m.Invoice):
        return build_and_validate(invoice_or_xml, today=today, schema_dir=schema_dir, cache_dir=cache_dir)[1]
    today = today or warsaw_today()
    issues = []
    data = invoice_or_xml
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        return [_issue("", "xml_parse", "Expected an Invoice or XML bytes, got %s" % type(data).__name__,
                       "Oczekiwano faktury (Invoice) lub bajtów XML, otrzymano %s" % type(data).__name__)]
    try:
        root = schemas.parse_xml(data)
    except XmlParseError as exc:
        return [schemas.issue_from_parse_error(exc)]
    try:
        form = schemas.detect_form(root)
    except XmlParseError as exc:
        return [_issue(root.tag.split("}")[-1], "unknown_form", str(exc),
                       "Nieznany rodzaj dokumentu (przestrzeń nazw %r)" % exc.params.get("namespace"),
                       value=exc.params.get("namespace"))]
    if form not in ("FA3", "FA2"):
        return [_issue(root.tag.split("}")[-1], "unknown_form",
                       "The document is %s, not an FA(3)/FA(2) invoice" % form,
                       "Dokument jest typu %s, a nie fakturą FA(3)/FA(2)" % form, value=form)]
    xsd_issues = schemas.validate_xsd(root, form=form, schema_dir=schema_dir, cache_dir=cache_dir)
    try:
        invoice = parse(root)
    except XmlParseError as exc:
        issues.extend(_check_raw(data, None))
        issues.extend(xsd_issues)
        if not xsd_issues:
            issues.append(_issue(exc.params.get("path", ""), "xml_parse", str(exc),
                                 "Nie można odczytać wartości: %s" % exc.params.get("value", ""),
                                 value=exc.params.get("value")))
        return issues
    issues.extend(_check_raw(data, invoice))
    if form == "FA2":
        issues.append(_issue("Faktura/Naglowek/KodFormularza", "fa2_form",
                             "FA(2) invoice: KSeF no longer accepts FA(2) for sending on production "
                             "(only FA(3)); reading it is fine",
                             "Faktura FA(2): KSeF nie przyjmuje już FA(2) do wysyłki na produkcji "
                             "(tylko FA(3)); odczyt jest możliwy", value="FA (2)", severity="warning"))
    issues.extend(xsd_issues)
    _safe_business_rules(invoice, today, issues)
    return issues


def build_and_validate(invoice, today=None, schema_dir=None, cache_dir=None):
    """Build an :class:`~ksef.fa3.model.Invoice` once and validate it: returns ``(xml_bytes, issues)``.

    ``xml_bytes`` is ``None`` when the model holds a value that cannot be written at all (the issues then
    say which). This is what the sending code should use: the returned bytes are the ones validated.
    """
    today = today or warsaw_today()
    try:
        root = build_tree(invoice)
    except InvoiceValidationError as exc:
        return None, list(exc.issues)
    data = serialize(root)
    issues = _check_raw(data, invoice)
    issues.extend(schemas.validate_xsd(root, form="FA3", schema_dir=schema_dir, cache_dir=cache_dir))
    _safe_business_rules(invoice, today, issues)
    return data, issues


def _safe_business_rules(invoice, today, issues):
    try:
        issues.extend(business_rules(invoice, today=today))
    except (KsefError, ArithmeticError, TypeError, ValueError, AttributeError) as exc:
        # Values of a wrong type in a hand-made model: the XSD issues already say what is wrong.
        if not any(i.severity == "error" for i in issues):
            issues.append(_issue("Faktura", "bad_value", "The invoice holds a value of a wrong type: %s" % exc,
                                 "Faktura zawiera wartość złego typu: %s" % exc))


def validate_or_raise(invoice_or_xml, today=None, schema_dir=None, cache_dir=None):
    """Like :func:`validate`, but raises :class:`~ksef.errors.InvoiceValidationError` when there is at least
    one issue with severity ``error``. Returns the list of warnings otherwise."""
    issues = validate(invoice_or_xml, today=today, schema_dir=schema_dir, cache_dir=cache_dir)
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        raise InvoiceValidationError(errors)
    return issues


# ------------------------------------------------------------------------------------------------
# raw document checks (DIGEST §10)
# ------------------------------------------------------------------------------------------------

def _check_raw(data, invoice):
    issues = []
    has_attachment = invoice is not None and invoice.zalacznik is not None
    limit = MAX_SIZE_WITH_ATTACHMENT if has_attachment else MAX_SIZE
    if len(data) > limit:
        issues.append(_issue("Faktura", "file_too_large",
                             "The invoice file has %d bytes; KSeF accepts at most %d bytes%s"
                             % (len(data), limit, " (with attachment)" if has_attachment else ""),
                             "Plik faktury ma %d bajtów; KSeF przyjmuje najwyżej %d bajtów%s"
                             % (len(data), limit, " (z załącznikiem)" if has_attachment else ""),
                             value=str(len(data)), size=len(data), limit=limit))
    if data.startswith(b"\xef\xbb\xbf"):
        issues.append(_issue("", "bom", "The file starts with a UTF-8 byte order mark (BOM); KSeF refuses it",
                             "Plik zaczyna się znacznikiem BOM; KSeF go odrzuca"))
    head = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    decl = _DECL_ENCODING_RE.match(head.lstrip())
    if decl and decl.group(1).decode("ascii").lower().replace("_", "-") not in ("utf-8", "utf8"):
        issues.append(_issue("", "encoding", "The XML declaration names encoding %s; only UTF-8 is allowed"
                             % decl.group(1).decode("ascii"),
                             "Prolog XML wskazuje kodowanie %s; dozwolone jest tylko UTF-8"
                             % decl.group(1).decode("ascii"), value=decl.group(1).decode("ascii")))
    if _PI_RE.search(data):
        issues.append(_issue("", "processing_instruction",
                             "The document contains a processing instruction (<?...?>); KSeF refuses it",
                             "Dokument zawiera instrukcję przetwarzania (<?...?>); KSeF go odrzuca"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        issues.append(_issue("", "encoding", "The file is not valid UTF-8 (byte %d)" % exc.start,
                             "Plik nie jest poprawnym UTF-8 (bajt %d)" % exc.start))
        return issues
    for match in _DISCOURAGED_RE.finditer(text):
        code_point = "U+%04X" % ord(match.group())
        line = text.count("\n", 0, match.start()) + 1
        issues.append(_issue("", "discouraged_character",
                             "Discouraged Unicode character %s at line %d; KSeF refuses it" % (code_point, line),
                             "Niezalecany znak Unicode %s w wierszu %d; KSeF odrzuca taki dokument"
                             % (code_point, line), value=code_point, line=line))
        if len(issues) > 20:
            break
    return issues


# ------------------------------------------------------------------------------------------------
# business rules on the model
# ------------------------------------------------------------------------------------------------

def _idx(name, index):
    return "%s[%d]" % (name, index + 1)


def business_rules(invoice, today=None):
    """Only the business rules (no XSD) for an :class:`~ksef.fa3.model.Invoice`."""
    today = today or warsaw_today()
    issues = []
    fa = invoice.fa or m.Fa()
    kind = fa.rodzaj_faktury
    _check_nips(invoice, issues)
    _check_dates(invoice, fa, today, issues)
    _check_corrections(fa, kind, issues)
    _check_totals(fa, kind, issues)
    _check_currency(fa, issues)
    _check_annotations(invoice, fa, issues)
    _check_parties(invoice, fa, issues)
    _check_kind_requirements(fa, kind, issues)
    _check_settlement(fa, issues)
    _check_fa2_only(invoice, fa, issues)
    return issues


def _nip_issue(path, nip):
    return _issue(path, "nip_checksum", "NIP %s has a wrong check digit (KSeF production rejects it)" % nip,
                  "NIP %s ma błędną cyfrę kontrolną (KSeF produkcyjny odrzuci fakturę)" % nip, value=nip)


def _nip_ok(nip):
    return not re.fullmatch(r"[0-9]{10}", nip or "") or numbers.is_valid_nip(nip)


def _check_nips(invoice, issues):
    def check(party, path):
        di = party.dane_identyfikacyjne if party is not None else None
        if di is None:
            return
        if di.nip and not _nip_ok(di.nip):
            issues.append(_nip_issue(path + "/DaneIdentyfikacyjne/NIP", di.nip))
        if di.id_wew:
            nip = di.id_wew.split("-")[0]
            if not _nip_ok(nip):
                issue = _nip_issue(path + "/DaneIdentyfikacyjne/IDWew", di.id_wew)
                issue.message_en = "The NIP part of internal id %s has a wrong check digit" % di.id_wew
                issue.message_pl = "Część NIP identyfikatora wewnętrznego %s ma błędną cyfrę kontrolną" % di.id_wew
                issues.append(issue)

    check(invoice.podmiot1, "Faktura/Podmiot1")
    check(invoice.podmiot2, "Faktura/Podmiot2")
    for i, party in enumerate(invoice.podmiot3):
        check(party, "Faktura/" + _idx("Podmiot3", i))
    check(invoice.podmiot_upowazniony, "Faktura/PodmiotUpowazniony")


def _ksef_number_issue(path, number):
    """Issue for an XSD-valid KSeF number whose checksum does not match (None when fine / unverifiable)."""
    try:
        numbers.parse_ksef_number(number)
        return None
    except ValueError as exc:
        reason = str(exc)
    if reason != "bad_checksum":
        return None  # other formats accepted by the XSD (KSeF 1.0 style): nothing we can verify
    try:
        day = datetime.datetime.strptime(number[11:19], "%Y%m%d").date()
    except ValueError:
        day = None
    severity = "error" if day is not None and day >= KSEF_2_START else "warning"
    return _issue(path, "ksef_number",
                  "KSeF number %s has a wrong checksum (last two characters)" % number,
                  "Numer KSeF %s ma błędną sumę kontrolną (dwa ostatnie znaki)" % number,
                  value=number, severity=severity)


def _check_dates(invoice, fa, today, issues):
    if isinstance(fa.p_1, datetime.date) and fa.p_1 > today:
        issues.append(_issue("Faktura/Fa/P_1", "p1_in_future",
                             "Issue date %s is in the future (KSeF refuses an issue date after the day it "
                             "receives the invoice)" % fa.p_1.isoformat(),
                             "Data wystawienia %s jest w przyszłości (KSeF odrzuca datę późniejszą niż dzień "
                             "przyjęcia faktury)" % fa.p_1.isoformat(), value=fa.p_1.isoformat()))
    period = fa.okres_fa
    if period is not None and isinstance(period.p_6_od, datetime.date) and isinstance(period.p_6_do,
                                                                                       datetime.date):
        if period.p_6_od > period.p_6_do:
            issues.append(_issue("Faktura/Fa/OkresFa/P_6_Do", "period_order",
                                 "Period end %s is before its start %s" % (period.p_6_do, period.p_6_od),
                                 "Koniec okresu %s jest przed jego początkiem %s" % (period.p_6_do, period.p_6_od),
                                 value=period.p_6_do.isoformat()))
    if isinstance(fa.p_1, datetime.date):
        for i, ref in enumerate(fa.dane_fa_korygowanej):
            if isinstance(ref.data_wyst_fa_korygowanej, datetime.date) and ref.data_wyst_fa_korygowanej > fa.p_1:
                issues.append(_issue("Faktura/Fa/%s/DataWystFaKorygowanej" % _idx("DaneFaKorygowanej", i),
                                     "corrected_date_after_issue",
                                     "The corrected invoice (%s) cannot be issued after this correction (%s)"
                                     % (ref.data_wyst_fa_korygowanej, fa.p_1),
                                     "Faktura korygowana (%s) nie może być wystawiona po korekcie (%s)"
                                     % (ref.data_wyst_fa_korygowanej, fa.p_1),
                                     value=ref.data_wyst_fa_korygowanej.isoformat()))
        if fa.platnosc is not None:
            for i, term in enumerate(fa.platnosc.termin_platnosci):
                if isinstance(term.termin, datetime.date) and term.termin < fa.p_1:
                    issues.append(_issue("Faktura/Fa/Platnosc/%s/Termin" % _idx("TerminPlatnosci", i),
                                         "due_date_before_issue",
                                         "Payment due date %s is before the issue date %s" % (term.termin, fa.p_1),
                                         "Termin płatności %s jest przed datą wystawienia %s" % (term.termin,
                                                                                                 fa.p_1),
                                         value=term.termin.isoformat(), severity="warning"))


_CORRECTION_FIELDS = (
    ("przyczyna_korekty", "PrzyczynaKorekty"), ("typ_korekty", "TypKorekty"),
    ("dane_fa_korygowanej", "DaneFaKorygowanej"), ("okres_fa_korygowanej", "OkresFaKorygowanej"),
    ("nr_fa_korygowany", "NrFaKorygowany"), ("podmiot1k", "Podmiot1K"), ("podmiot2k", "Podmiot2K"),
    ("p_15zk", "P_15ZK"), ("kurs_waluty_zk", "KursWalutyZK"),
)


def _check_corrections(fa, kind, issues):
    if kind in rates.CORRECTION_KINDS:
        if not fa.dane_fa_korygowanej:
            issues.append(_issue("Faktura/Fa/DaneFaKorygowanej", "correction_reference_missing",
                                 "A %s correction invoice must identify the corrected invoice "
                                 "(DaneFaKorygowanej)" % kind,
                                 "Faktura korygująca %s musi wskazywać fakturę korygowaną (DaneFaKorygowanej)"
                                 % kind, value=kind))
    elif kind is not None:
        for attr, name in _CORRECTION_FIELDS:
            value = getattr(fa, attr)
            if value is not None and value != []:
                issues.append(_issue("Faktura/Fa/" + name, "correction_data_not_allowed",
                                     "%s belongs to correction invoices only, not to %s" % (name, kind),
                                     "%s dotyczy tylko faktur korygujących, a nie %s" % (name, kind),
                                     value=kind))
        for i, line in enumerate(fa.fa_wiersz):
            if line.stan_przed:
                issues.append(_issue("Faktura/Fa/%s/StanPrzed" % _idx("FaWiersz", i), "before_row_not_allowed",
                                     "StanPrzed (row before correction) is only allowed on correction invoices",
                                     "StanPrzed (wiersz przed korektą) jest dozwolony tylko na fakturach "
                                     "korygujących", value="1"))
    for i, ref in enumerate(fa.dane_fa_korygowanej):
        if ref.nr_ksef and ref.nr_ksef_fa_korygowanej:
            issue = _ksef_number_issue("Faktura/Fa/%s/NrKSeFFaKorygowanej" % _idx("DaneFaKorygowanej", i),
                                       ref.nr_ksef_fa_korygowanej)
            if issue:
                issues.append(issue)
    for i, adv in enumerate(fa.faktura_zaliczkowa):
        if adv.nr_ksef_fa_zaliczkowej:
            issue = _ksef_number_issue("Faktura/Fa/%s/NrKSeFFaZaliczkowej" % _idx("FakturaZaliczkowa", i),
                                       adv.nr_ksef_fa_zaliczkowej)
            if issue:
                issues.append(issue)


def _close(value, candidates):
    return any(c is not None and abs(value - c) <= TOLERANCE for c in candidates)


def _line_gross_total(fa, margin):
    """Σ per-line gross (rounded per line) — the way invoices priced gross add up."""
    total = Decimal(0)
    for line in fa.fa_wiersz:
        sign = -1 if line.stan_przed else 1
        if line.p_11a is not None:
            total += sign * Decimal(line.p_11a)
            continue
        if line.p_11 is None:
            continue
        rate = rates.line_rate(line) or Decimal(0)
        vat = Decimal(line.p_11vat) if line.p_11vat is not None else Decimal(line.p_11) * rate
        total += sign * rates.round_half_up(Decimal(line.p_11) + vat)
    return total


def _check_totals(fa, kind, issues):
    present = rates.bucket_values(fa)
    # lines without a rate belong to P_13_11 when the invoice says "margin" (PMarzy or a P_13_11 amount;
    # a missing PMarzy annotation is reported separately)
    margin = bool(fa.adnotacje and fa.adnotacje.pmarzy and fa.adnotacje.pmarzy.p_pmarzy) or fa.p_13_11 is not None
    line_based = kind in ("VAT", "KOR", "UPR") and any(
        line.p_11 is not None or line.p_11a is not None for line in fa.fa_wiersz) and all(
        line.p_12 is None or line.p_12 in rates.RATE_BUCKET for line in fa.fa_wiersz)  # unknown code: XSD says
    summary = rates.compute_summary(fa, margin=margin) if line_based else None
    # P_15 = sum of the buckets
    if present and fa.p_15 is not None:
        bucket_sum = sum((Decimal(net or 0) + Decimal(vat or 0)) for net, vat, _pln in present.values())
        candidates = [bucket_sum]
        if line_based:
            candidates.append(_line_gross_total(fa, margin))
        if not _close(Decimal(fa.p_15), candidates):
            issues.append(_issue("Faktura/Fa/P_15", "total_mismatch",
                                 "P_15 (total due) %s differs from the sum of the net and VAT amounts %s"
                                 % (_fmt(fa.p_15), _fmt(bucket_sum)),
                                 "P_15 (kwota należności ogółem) %s różni się od sumy kwot netto i VAT %s"
                                 % (_fmt(fa.p_15), _fmt(bucket_sum)), value=fa.p_15, expected=_fmt(bucket_sum)))
    if summary is None:
        return
    # each bucket vs the lines
    per_line_vat = _per_line_vat(fa, margin)
    for bucket in rates.BUCKETS:
        net_el, vat_el, _pln_el = rates.BUCKET_ELEMENTS[bucket]
        label_en, label_pl = rates.BUCKET_LABELS[bucket]
        doc = present.get(bucket)
        calc_net = summary.net.get(bucket)
        if doc is None or doc[0] is None:
            if calc_net is not None and calc_net != 0:
                issues.append(_issue("Faktura/Fa/" + net_el, "bucket_missing",
                                     "%s is missing: the lines with %s add up to %s"
                                     % (net_el, label_en, _fmt(calc_net)),
                                     "Brak %s: wiersze ze stawką %s sumują się do %s"
                                     % (net_el, label_pl, _fmt(calc_net)), expected=_fmt(calc_net)))
            continue
        doc_net, doc_vat, _doc_pln = doc
        if calc_net is None:
            if Decimal(doc_net) != 0:
                issues.append(_issue("Faktura/Fa/" + net_el, "bucket_without_lines",
                                     "%s = %s but no line has %s" % (net_el, _fmt(doc_net), label_en),
                                     "%s = %s, ale żaden wiersz nie ma stawki %s" % (net_el, _fmt(doc_net),
                                                                                      label_pl),
                                     value=doc_net))
            continue
        if not _close(Decimal(doc_net), [calc_net]):
            issues.append(_issue("Faktura/Fa/" + net_el, "bucket_mismatch",
                                 "%s %s differs from the sum of the line net values (%s) %s"
                                 % (net_el, _fmt(doc_net), label_en, _fmt(calc_net)),
                                 "%s %s różni się od sumy wartości netto wierszy (%s) %s"
                                 % (net_el, _fmt(doc_net), label_pl, _fmt(calc_net)),
                                 value=doc_net, expected=_fmt(calc_net)))
        if vat_el and doc_vat is not None and bucket in summary.vat:
            candidates = [summary.vat[bucket], per_line_vat.get(bucket)]
            if not _close(Decimal(doc_vat), candidates):
                issues.append(_issue("Faktura/Fa/" + vat_el, "bucket_mismatch",
                                     "%s %s differs from the VAT computed from the lines (%s) %s"
                                     % (vat_el, _fmt(doc_vat), label_en, _fmt(summary.vat[bucket])),
                                     "%s %s różni się od podatku wyliczonego z wierszy (%s) %s"
                                     % (vat_el, _fmt(doc_vat), label_pl, _fmt(summary.vat[bucket])),
                                     value=doc_vat, expected=_fmt(summary.vat[bucket])))


def _per_line_vat(fa, margin):
    """Σ per bucket of the VAT rounded per line (another rounding practice the examples use)."""
    result = {}
    for line in fa.fa_wiersz:
        bucket = rates.line_bucket(line, margin)
        rate = rates.line_rate(line)
        if bucket not in rates.VAT_BUCKETS or rate is None:
            continue
        sign = -1 if line.stan_przed else 1
        if line.p_11vat is not None:
            vat = Decimal(line.p_11vat)
        elif line.p_11 is not None:
            vat = rates.round_half_up(Decimal(line.p_11) * rate)
        elif line.p_11a is not None:
            vat = rates.round_half_up(Decimal(line.p_11a) * rate / (1 + rate))
        else:
            continue
        result[bucket] = result.get(bucket, Decimal(0)) + sign * vat
    return result


def _check_currency(fa, issues):
    currency = fa.kod_waluty or "PLN"
    present = rates.bucket_values(fa)
    if currency == "PLN":
        for bucket, (_net, _vat, pln) in present.items():
            if pln is not None:
                el = rates.BUCKET_ELEMENTS[bucket][2]
                issues.append(_issue("Faktura/Fa/" + el, "vat_pln_not_allowed",
                                     "%s (VAT converted to PLN) is only for invoices in a foreign currency" % el,
                                     "%s (podatek przeliczony na PLN) dotyczy tylko faktur w walucie obcej" % el,
                                     value=pln))
        rate_paths = []
        if fa.kurs_waluty_z is not None:
            rate_paths.append(("Faktura/Fa/KursWalutyZ", fa.kurs_waluty_z))
        rate_paths.extend(("Faktura/Fa/%s/KursWaluty" % _idx("FaWiersz", i), line.kurs_waluty)
                          for i, line in enumerate(fa.fa_wiersz) if line.kurs_waluty is not None)
        for path, value in rate_paths[:5]:
            issues.append(_issue(path, "exchange_rate_on_pln",
                                 "An exchange rate on an invoice in PLN is not expected",
                                 "Kurs waluty na fakturze w PLN nie jest oczekiwany", value=value,
                                 severity="warning"))
        return
    has_rate = fa.kurs_waluty_z is not None or any(line.kurs_waluty is not None for line in fa.fa_wiersz) or any(
        z.kurs_waluty_zw is not None for z in fa.zaliczka_czesciowa)
    summary = rates.compute_summary(fa) if fa.fa_wiersz else None
    for bucket in rates.VAT_PLN_BUCKETS:
        values = present.get(bucket)
        if values is None or values[1] is None:
            continue
        _net, vat, pln = values
        el = rates.BUCKET_ELEMENTS[bucket][2]
        if pln is None:
            if Decimal(vat) == 0:
                continue
            issues.append(_issue("Faktura/Fa/" + el, "vat_pln_missing",
                                 "%s is missing: an invoice in %s must show the VAT amount converted to PLN"
                                 % (el, currency),
                                 "Brak %s: faktura w walucie %s musi podawać kwotę podatku przeliczoną na PLN"
                                 % (el, currency), severity="error" if has_rate else "warning",
                                 currency=currency))
            continue
        if summary is not None and bucket in summary.vat_pln and fa.rodzaj_faktury in ("VAT", "KOR", "UPR"):
            expected = summary.vat_pln[bucket]
            if not _close(Decimal(pln), [expected]):
                issues.append(_issue("Faktura/Fa/" + el, "vat_pln_mismatch",
                                     "%s %s differs from the VAT converted with the lines' exchange rates %s"
                                     % (el, _fmt(pln), _fmt(expected)),
                                     "%s %s różni się od podatku przeliczonego kursami z wierszy %s"
                                     % (el, _fmt(pln), _fmt(expected)), value=pln, severity="warning",
                                     expected=_fmt(expected)))


def _check_annotations(invoice, fa, issues):
    ann = fa.adnotacje
    if ann is None:
        return
    margin = bool(ann.pmarzy and ann.pmarzy.p_pmarzy)
    codes = [line.p_12 for line in fa.fa_wiersz]
    exempt_used = "zw" in codes or fa.p_13_7 is not None
    exempt = bool(ann.zwolnienie and ann.zwolnienie.p_19)
    if exempt_used and not exempt:
        issues.append(_issue("Faktura/Fa/Adnotacje/Zwolnienie/P_19", "exemption_missing",
                             "Exempt supplies ('zw' / P_13_7) require Zwolnienie/P_19=1 with the legal basis "
                             "(P_19A, P_19B or P_19C)",
                             "Sprzedaż zwolniona ('zw' / P_13_7) wymaga Zwolnienie/P_19=1 z podstawą prawną "
                             "(P_19A, P_19B lub P_19C)"))
    elif exempt and not exempt_used and fa.rodzaj_faktury not in rates.CORRECTION_KINDS:
        issues.append(_issue("Faktura/Fa/Adnotacje/Zwolnienie/P_19", "exemption_unused",
                             "P_19=1 (exemption) but no line has rate 'zw' and P_13_7 is empty",
                             "P_19=1 (zwolnienie), ale żaden wiersz nie ma stawki 'zw' i P_13_7 jest puste",
                             value="1", severity="warning"))
    if fa.p_13_11 is not None and not margin:
        issues.append(_issue("Faktura/Fa/Adnotacje/PMarzy/P_PMarzy", "margin_missing",
                             "P_13_11 (margin scheme sales) requires PMarzy/P_PMarzy=1 with the procedure",
                             "P_13_11 (sprzedaż w procedurze marży) wymaga PMarzy/P_PMarzy=1 ze wskazaniem "
                             "procedury"))
    elif margin and fa.p_13_11 is None and fa.rodzaj_faktury in ("VAT", "UPR"):
        issues.append(_issue("Faktura/Fa/Adnotacje/PMarzy/P_PMarzy", "margin_unused",
                             "P_PMarzy=1 (margin scheme) but P_13_11 is empty",
                             "P_PMarzy=1 (procedura marży), ale P_13_11 jest puste", value="1",
                             severity="warning"))
    buyer_settles = [i for i, code in enumerate(codes) if code in ("oo", "np II")]
    if (buyer_settles or fa.p_13_10 is not None or fa.p_13_9 is not None) and ann.p_18 != 1:
        path = ("Faktura/Fa/%s/P_12" % _idx("FaWiersz", buyer_settles[0])) if buyer_settles else "Faktura/Fa/P_13_10"
        issues.append(_issue("Faktura/Fa/Adnotacje/P_18", "reverse_charge_annotation",
                             "Lines where the buyer settles the VAT ('oo' / 'np II') normally need P_18=1 "
                             "(\"odwrotne obciążenie\")",
                             "Wiersze, w których podatek rozlicza nabywca ('oo' / 'np II'), zwykle wymagają "
                             "P_18=1 (\"odwrotne obciążenie\")", value=_fmt(ann.p_18), severity="warning",
                             line_path=path))
    annex15 = any(line.p_12_zal_15 for line in fa.fa_wiersz) or any(
        z.p_12z_zal_15 for z in (fa.zamowienie.zamowienie_wiersz if fa.zamowienie else []))
    if annex15 and ann.p_18a != 1 and fa.p_15 is not None:
        total = Decimal(fa.p_15)
        currency = fa.kod_waluty or "PLN"
        rate = fa.kurs_waluty_z or next((line.kurs_waluty for line in fa.fa_wiersz if line.kurs_waluty), None)
        total_pln = total if currency == "PLN" else (total * Decimal(rate) if rate is not None else None)
        if total_pln is not None and abs(total_pln) > SPLIT_PAYMENT_THRESHOLD:
            issues.append(_issue("Faktura/Fa/Adnotacje/P_18A", "split_payment",
                                 "Goods/services from annex 15 and a total above 15,000 PLN: the split payment "
                                 "mechanism (P_18A=1) is mandatory when the buyer is a taxpayer",
                                 "Towary/usługi z załącznika nr 15 i kwota ponad 15 000 zł: mechanizm podzielonej "
                                 "płatności (P_18A=1) jest obowiązkowy, gdy nabywca jest podatnikiem",
                                 value=_fmt(ann.p_18a), severity="warning"))
    if ann.p_17 == 1:
        buyer = invoice.podmiot2.dane_identyfikacyjne if invoice.podmiot2 else None
        if buyer is None or not buyer.nip:
            issues.append(_issue("Faktura/Podmiot2/DaneIdentyfikacyjne/NIP", "self_billing_buyer",
                                 "Self-billing (P_17=1): the buyer issues the invoice in its own KSeF context, so "
                                 "Podmiot2 should be identified by a Polish NIP",
                                 "Samofakturowanie (P_17=1): nabywca wystawia fakturę w swoim kontekście KSeF, "
                                 "więc Podmiot2 powinien mieć polski NIP", severity="warning"))


def _check_parties(invoice, fa, issues):
    buyer = invoice.podmiot2
    roles = [p.rola for p in invoice.podmiot3]
    if buyer is not None:
        if buyer.jst == 1 and 8 not in roles:
            issues.append(_issue("Faktura/Podmiot2/JST", "jst_recipient_missing",
                                 "JST=1: list the local-government subunit in Podmiot3 with Rola=8, otherwise KSeF "
                                 "does not make the invoice available to it",
                                 "JST=1: podaj jednostkę podrzędną JST w Podmiot3 z Rola=8, inaczej KSeF nie "
                                 "udostępni jej faktury", value="1", severity="warning"))
        if buyer.gv == 1 and 10 not in roles:
            issues.append(_issue("Faktura/Podmiot2/GV", "gv_recipient_missing",
                                 "GV=1: list the VAT-group member in Podmiot3 with Rola=10, otherwise KSeF does not "
                                 "make the invoice available to it",
                                 "GV=1: podaj członka grupy VAT w Podmiot3 z Rola=10, inaczej KSeF nie udostępni "
                                 "mu faktury", value="1", severity="warning"))
    for i, party in enumerate(invoice.podmiot3):
        if party.udzial is not None and party.rola != 4:
            issues.append(_issue("Faktura/%s/Udzial" % _idx("Podmiot3", i), "share_without_role",
                                 "Udzial (share) is meant for additional buyers (Rola=4)",
                                 "Udzial (udział) dotyczy dodatkowego nabywcy (Rola=4)", value=party.udzial,
                                 severity="warning"))
    if any(line.p_12 == "0 WDT" for line in fa.fa_wiersz) and buyer is not None:
        di = buyer.dane_identyfikacyjne
        if di is None or not (di.kod_ue and di.nr_vat_ue):
            issues.append(_issue("Faktura/Podmiot2/DaneIdentyfikacyjne", "intra_eu_buyer",
                                 "Intra-EU supply at 0% ('0 WDT') normally needs the buyer's EU VAT number "
                                 "(KodUE + NrVatUE)",
                                 "WDT ze stawką 0% ('0 WDT') zwykle wymaga numeru VAT UE nabywcy (KodUE + NrVatUE)",
                                 severity="warning"))


def _check_kind_requirements(fa, kind, issues):
    if kind in ("VAT", "ROZ") and not fa.fa_wiersz:
        issues.append(_issue("Faktura/Fa/FaWiersz", "lines_missing",
                             "A %s invoice must have its lines (FaWiersz)" % kind,
                             "Faktura %s musi zawierać wiersze (FaWiersz)" % kind, value=kind))
    if kind == "ZAL" and fa.zamowienie is None:
        issues.append(_issue("Faktura/Fa/Zamowienie", "order_missing",
                             "An advance invoice (ZAL) must describe the order or contract (Zamowienie)",
                             "Faktura zaliczkowa (ZAL) musi zawierać zamówienie lub umowę (Zamowienie)",
                             value=kind))
    if kind == "ROZ" and not fa.faktura_zaliczkowa:
        issues.append(_issue("Faktura/Fa/FakturaZaliczkowa", "advance_invoice_missing",
                             "A settlement invoice (ROZ) must list the advance invoices it settles "
                             "(FakturaZaliczkowa)",
                             "Faktura rozliczeniowa (ROZ) musi wskazywać rozliczane faktury zaliczkowe "
                             "(FakturaZaliczkowa)", value=kind))
    order = fa.zamowienie
    if order is not None and order.wartosc_zamowienia is not None and order.zamowienie_wiersz:
        total = Decimal(0)
        complete = True
        for row in order.zamowienie_wiersz:
            if row.stan_przed_z:
                continue
            if row.p_11_netto_z is None:
                complete = False
                break
            total += Decimal(row.p_11_netto_z) + Decimal(row.p_11_vat_z or 0)
        if complete and not _close(Decimal(order.wartosc_zamowienia), [total]):
            issues.append(_issue("Faktura/Fa/Zamowienie/WartoscZamowienia", "order_total_mismatch",
                                 "WartoscZamowienia %s differs from the sum of the order lines (net + VAT) %s"
                                 % (_fmt(order.wartosc_zamowienia), _fmt(total)),
                                 "WartoscZamowienia %s różni się od sumy pozycji zamówienia (netto + VAT) %s"
                                 % (_fmt(order.wartosc_zamowienia), _fmt(total)), value=order.wartosc_zamowienia,
                                 severity="warning", expected=_fmt(total)))


def _check_settlement(fa, issues):
    settle = fa.rozliczenie
    if settle is None:
        return
    for attr, name, items in (("suma_obciazen", "SumaObciazen", settle.obciazenia),
                              ("suma_odliczen", "SumaOdliczen", settle.odliczenia)):
        declared = getattr(settle, attr)
        if declared is not None and items and all(x.kwota is not None for x in items):
            total = sum((Decimal(x.kwota) for x in items), Decimal(0))
            if Decimal(declared) != total:
                issues.append(_issue("Faktura/Fa/Rozliczenie/" + name, "settlement_sum_mismatch",
                                     "%s %s differs from the sum of its entries %s" % (name, _fmt(declared),
                                                                                       _fmt(total)),
                                     "%s %s różni się od sumy pozycji %s" % (name, _fmt(declared), _fmt(total)),
                                     value=declared, expected=_fmt(total)))
    if settle.do_zaplaty is not None and fa.p_15 is not None:
        expected = Decimal(fa.p_15) + Decimal(settle.suma_obciazen or 0) - Decimal(settle.suma_odliczen or 0)
        if Decimal(settle.do_zaplaty) != expected:
            issues.append(_issue("Faktura/Fa/Rozliczenie/DoZaplaty", "settlement_total_mismatch",
                                 "DoZaplaty %s differs from P_15 + SumaObciazen - SumaOdliczen = %s"
                                 % (_fmt(settle.do_zaplaty), _fmt(expected)),
                                 "DoZaplaty %s różni się od P_15 + SumaObciazen - SumaOdliczen = %s"
                                 % (_fmt(settle.do_zaplaty), _fmt(expected)), value=settle.do_zaplaty,
                                 severity="warning", expected=_fmt(expected)))


def _check_fa2_only(invoice, fa, issues):
    if invoice.source_form == "FA2":
        return
    if fa.platnosc is not None:
        for i, term in enumerate(fa.platnosc.termin_platnosci):
            if term.termin_opis is not None and term.termin_opis.tekst:
                issues.append(_issue("Faktura/Fa/Platnosc/%s/TerminOpis" % _idx("TerminPlatnosci", i),
                                     "fa2_only_data",
                                     "A free-text payment term (FA(2)) cannot be written in FA(3): use Ilosc, "
                                     "Jednostka and ZdarzeniePoczatkowe",
                                     "Opisowego terminu płatności z FA(2) nie można zapisać w FA(3): użyj pól "
                                     "Ilosc, Jednostka i ZdarzeniePoczatkowe", value=term.termin_opis.tekst))
