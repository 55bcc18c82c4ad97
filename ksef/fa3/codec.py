"""FA(3) XML builder and FA(3)/FA(2) parser for the :mod:`ksef.fa3.model` dataclasses.

The builder walks the model's field specs (declared in XSD order) and writes exactly the elements that
are set, so the output follows the XSD order by construction. Output: UTF-8 without BOM, an XML
declaration with double quotes, the FA(3) namespace as default namespace, two-space indentation.
It is deterministic: the same model always gives the same bytes (the QR code hash and KSeF's
``invoiceHash`` are computed over these bytes, so store what you send).
"""
import datetime
import re
from decimal import Decimal, InvalidOperation

from lxml import etree

from ..errors import XmlParseError
from ..schemas import FA2_NS, FA3_NS, element_path, parse_xml
from . import model as m

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
FORM_HEADERS = {
    "FA3": ("FA (3)", "1-0E", "FA", "3"),
    "FA2": ("FA (2)", "1-0E", "FA", "2"),
}
NAMESPACE_FORM = {FA3_NS: "FA3", FA2_NS: "FA2"}

# "N" markers of XSD choices: not written when the positive alternative is set.
m.Zwolnienie._exclusive_ = {"p_19n": "p_19"}
m.NoweSrodkiTransportu._exclusive_ = {"p_22n": "p_22"}
m.PMarzy._exclusive_ = {"p_pmarzy_n": "p_pmarzy"}

#: names of FA(3) elements that may repeat: they always get ``[n]`` in issue paths
REPEATABLE = frozenset(spec.xml for cls in m.MODEL_CLASSES for spec in cls._xml_fields_ if spec.many)


def _path(node):
    return element_path(node, REPEATABLE)


# ------------------------------------------------------------------------------------------------
# value formatting
# ------------------------------------------------------------------------------------------------

def format_decimal(value):
    """Decimal/int/str/float → XSD decimal text without exponent (``Decimal('1E+2')`` → ``100``)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("not a finite number")
        return format(value, "f")
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, str):
        return format(Decimal(value.strip()), "f")
    raise ValueError("not a number")


class XsdDateTime(datetime.datetime):
    """A datetime parsed from text that the canonical format would not reproduce (e.g. 7 fraction digits
    written by .NET: ``2026-03-22T03:27:54.0792168Z``). Behaves as a datetime; keeps ``xsd_text`` so that
    parse → build is lossless."""

    xsd_text = None

    def __reduce_ex__(self, protocol):
        return (_make_xsd_datetime, (datetime.datetime(self.year, self.month, self.day, self.hour, self.minute,
                                                       self.second, self.microsecond, self.tzinfo),
                                     self.xsd_text))


def _make_xsd_datetime(value, text):
    result = XsdDateTime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                         value.microsecond, tzinfo=value.tzinfo)
    result.xsd_text = text
    return result


def format_datetime(value):
    """xsd:dateTime text; UTC is written with ``Z``, fractions of seconds without trailing zeros."""
    if isinstance(value, str):
        return value
    text = getattr(value, "xsd_text", None)
    if text is not None:
        return text
    if not isinstance(value, datetime.datetime):
        raise ValueError("not a datetime")
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += (".%06d" % value.microsecond).rstrip("0")
    offset = value.utcoffset()
    if offset is None:
        return text
    if not offset:
        return text + "Z"
    total = int(offset.total_seconds())
    sign = "-" if total < 0 else "+"
    total = abs(total)
    return "%s%s%02d:%02d" % (text, sign, total // 3600, (total % 3600) // 60)


def _format_date(value):
    if isinstance(value, datetime.datetime):
        return value.date().isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise ValueError("not a date")


def _format_int(value):
    if isinstance(value, str):
        return value.strip()
    return str(int(value))


def _format_str(value):
    return value if isinstance(value, str) else str(value)


_FORMATTERS = {
    m.STR: _format_str,
    m.DEC: format_decimal,
    m.INT: _format_int,
    m.DATE: _format_date,
    m.DATETIME: format_datetime,
}

_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$")


def parse_datetime(text):
    """Parse xsd:dateTime (``Z``/offset optional, any number of fraction digits) into a datetime."""
    mt = _DATETIME_RE.match(text.strip())
    if not mt:
        raise ValueError("not an xsd:dateTime")
    year, month, day, hour, minute, second, fraction, zone = mt.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = None
    if zone == "Z":
        tz = datetime.timezone.utc
    elif zone:
        sign = -1 if zone[0] == "-" else 1
        tz = datetime.timezone(sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    hour_i = int(hour)
    extra_day = hour_i == 24  # xsd allows 24:00:00
    value = datetime.datetime(int(year), int(month), int(day), 0 if extra_day else hour_i, int(minute),
                              int(second), micro, tzinfo=tz)
    if extra_day:
        value += datetime.timedelta(days=1)
    original = text.strip()
    if format_datetime(value) != original:
        value = _make_xsd_datetime(value, original)
    return value


def _parse_date(text):
    return datetime.date.fromisoformat(text.strip())


def _parse_decimal(text):
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError("not a decimal") from None
    if not value.is_finite():
        raise ValueError("not a decimal")
    return value


def _parse_int(text):
    return int(text.strip())


_PARSERS = {
    m.STR: lambda text: text,
    m.DEC: _parse_decimal,
    m.INT: _parse_int,
    m.DATE: _parse_date,
    m.DATETIME: parse_datetime,
    m.FLAG: _parse_int,
}
_KIND_WORDS = {m.DEC: "decimal number", m.INT: "whole number", m.DATE: "date (YYYY-MM-DD)",
               m.DATETIME: "date-time", m.FLAG: "flag (1)"}


# ------------------------------------------------------------------------------------------------
# builder
# ------------------------------------------------------------------------------------------------

_build_specs = {}


def _specs_for_build(cls):
    specs = _build_specs.get(cls)
    if specs is None:
        exclusive = getattr(cls, "_exclusive_", {})
        specs = []
        for spec in cls._xml_fields_:
            tag = spec.xml if spec.is_attr else "{%s}%s" % (FA3_NS, spec.xml)
            specs.append((spec.attr, tag, spec.kind, spec.many, spec.is_attr, spec.is_class,
                          _FORMATTERS.get(spec.kind), exclusive.get(spec.attr)))
        specs = _build_specs[cls] = tuple(specs)
    return specs


def _emit(parent, obj, sub_element=etree.SubElement):
    for attr, tag, kind, many, is_attr, is_class, fmt, excluded_by in _specs_for_build(type(obj)):
        value = getattr(obj, attr)
        if value is None:
            continue
        if excluded_by is not None and getattr(obj, excluded_by):
            continue
        if is_attr:
            parent.set(tag, fmt(value))
            continue
        values = value if many else (value,)
        for item in values:
            if item is None:
                continue
            if is_class:
                _emit(sub_element(parent, tag), item)
            elif kind == m.FLAG:
                if item:
                    sub_element(parent, tag).text = "1"
            else:
                try:
                    sub_element(parent, tag).text = fmt(item)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    raise _build_error(parent, tag, item, kind, exc) from None


def _build_error(parent, tag, value, kind, exc):
    local = tag.split("}")[-1]
    path = "%s/%s" % (_path(parent), local)
    from ..errors import InvoiceValidationError, ValidationIssue

    word = _KIND_WORDS.get(kind, kind)
    issue = ValidationIssue(path=path, code="bad_value", value=repr(value),
                            message_en="Element %s: %r is not a valid %s" % (local, value, word),
                            message_pl="Element %s: %r nie jest poprawną wartością (%s)" % (local, value, word),
                            params={"element": local, "kind": kind, "detail": str(exc)})
    return InvoiceValidationError([issue])


def build_tree(invoice):
    """The FA(3) ``Faktura`` element for an :class:`~ksef.fa3.model.Invoice` (lxml element)."""
    if not isinstance(invoice, m.Invoice):
        raise TypeError("build() expects a ksef.fa3.Invoice, got %s" % type(invoice).__name__)
    root = etree.Element("{%s}Faktura" % FA3_NS, nsmap={None: FA3_NS})
    system_code, version, value, variant = FORM_HEADERS["FA3"]
    naglowek = etree.SubElement(root, "{%s}Naglowek" % FA3_NS)
    kod = etree.SubElement(naglowek, "{%s}KodFormularza" % FA3_NS)
    kod.set("kodSystemowy", system_code)
    kod.set("wersjaSchemy", version)
    kod.text = value
    etree.SubElement(naglowek, "{%s}WariantFormularza" % FA3_NS).text = variant
    if invoice.naglowek is not None:
        _emit(naglowek, invoice.naglowek)
    for attr, tag, _kind, many, _is_attr, _is_class, _fmt, _ex in _specs_for_build(m.Invoice)[1:]:
        value = getattr(invoice, attr)
        if value is None:
            continue
        for item in (value if many else (value,)):
            _emit(etree.SubElement(root, tag), item)
    return root


def build(invoice, pretty=True):
    """FA(3) XML bytes (UTF-8, no BOM) for an :class:`~ksef.fa3.model.Invoice`.

    Writes exactly what the model holds (no validation: call :func:`ksef.fa3.validate` on the result or
    the model). Raises :class:`~ksef.errors.InvoiceValidationError` (code ``bad_value``) when a field holds
    a value that cannot be written at all (e.g. a text in a decimal field).
    """
    return serialize(build_tree(invoice), pretty)


def serialize(root, pretty=True):
    """Bytes of a ``Faktura`` tree as :func:`build` writes them (indents the tree in place when ``pretty``)."""
    if pretty:
        etree.indent(root, space="  ")
    return XML_DECLARATION + etree.tostring(root, encoding="UTF-8") + b"\n"


# ------------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------------

_parse_specs = {}
_IGNORED_HEADER = ("KodFormularza", "WariantFormularza")


def _specs_for_parse(cls, ns):
    key = (cls, ns)
    table = _parse_specs.get(key)
    if table is None:
        elements, attributes = {}, []
        for spec in cls._xml_fields_:
            if spec.is_attr:
                attributes.append((spec.attr, spec.xml, _PARSERS[spec.kind]))
            else:
                sub = spec.kind if spec.is_class else None
                elements["{%s}%s" % (ns, spec.xml)] = (spec.attr, spec.many, sub,
                                                       None if sub else _PARSERS[spec.kind], spec.kind)
        if cls is m.Naglowek:
            for name in _IGNORED_HEADER:
                elements["{%s}%s" % (ns, name)] = None
        empty = {spec.attr: None for spec in cls._xml_fields_}
        for name in cls._extra_fields_:
            empty[name] = None
        lists = tuple(spec.attr for spec in cls._xml_fields_ if spec.many)
        table = _parse_specs[key] = (elements, tuple(attributes), empty, lists)
    return table


def _read(element, cls, ns):
    elements, attributes, empty, lists = _specs_for_parse(cls, ns)
    values = dict(empty)
    for name in lists:
        values[name] = []
    for attr, xml_name, conv in attributes:
        raw = element.get(xml_name)
        if raw is not None:
            values[attr] = _convert(conv, raw, element, xml_name=xml_name, is_attr=True)
    has_children = False
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        has_children = True
        try:
            entry = elements[tag]
        except KeyError:
            raise XmlParseError(
                "Unexpected element %s (not part of the %s structure)" % (_path(child), cls.__name__),
                params={"reason": "unexpected_element", "path": _path(child)}) from None
        if entry is None:
            continue
        attr, many, sub, conv, kind = entry
        if sub is not None:
            value = _read(child, sub, ns)
        else:
            value = _convert(conv, child.text or "", child, kind=kind)
        if many:
            values[attr].append(value)
        else:
            values[attr] = value
    if cls is m.TerminOpis and not has_children and (element.text or "").strip():
        values["tekst"] = element.text  # FA(2): TerminOpis is free text
    return cls(**values)


def _convert(conv, text, element, *, xml_name=None, is_attr=False, kind=None):
    try:
        return conv(text)
    except (ValueError, TypeError, ArithmeticError):
        path = _path(element) + ("/@%s" % xml_name if is_attr else "")
        word = _KIND_WORDS.get(kind, "value")
        raise XmlParseError("Element %s: %r is not a valid %s" % (path, text, word),
                            params={"reason": "bad_value", "path": path, "value": text, "kind": kind}) from None


def parse(xml):
    """Parse FA(3) or FA(2) XML (bytes/str or an lxml element) into an :class:`~ksef.fa3.model.Invoice`.

    ``invoice.source_form`` is 'FA3' or 'FA2'. Raises :class:`~ksef.errors.XmlParseError` (with
    ``params['reason']`` and, where relevant, ``path``/``value``) for malformed XML, another document type,
    unknown elements or unreadable values. It does not check the XSD: use :func:`ksef.fa3.validate`.
    """
    root = parse_xml(xml)
    qname = etree.QName(root)
    form = NAMESPACE_FORM.get(qname.namespace or "")
    if form is None or qname.localname != "Faktura":
        raise XmlParseError("Not an FA(3)/FA(2) invoice: root {%s}%s" % (qname.namespace, qname.localname),
                            params={"reason": "unsupported_form", "namespace": qname.namespace,
                                    "root": qname.localname})
    invoice = _read(root, m.Invoice, qname.namespace)
    invoice.source_form = form
    return invoice
