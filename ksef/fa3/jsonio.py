"""Lossless JSON <-> model conversion.

Keys are the model attribute names (``fa``, ``p_13_1``, ``fa_wiersz``...). Decimals are strings (their
exponent kept: ``"100.00"``), dates and date-times ISO-8601 strings (UTC as ``Z``), ints and flags numbers.
Fields equal to their default are left out, except that a field whose default is not ``None`` but whose
value is ``None`` is written as ``null`` — so ``from_dict(to_dict(x)) == x``. Hand-written JSON can leave
out anything that has a sensible default (``Adnotacje``, ``KodWaluty``, ``JST``/``GV``...).
"""
import dataclasses
import datetime
import json
from decimal import Decimal, InvalidOperation

from ..errors import XmlParseError
from . import model as m
from .codec import format_datetime, format_decimal, parse_datetime

_defaults = {}


def _class_defaults(cls):
    table = _defaults.get(cls)
    if table is None:
        table = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                table[f.name] = ("value", f.default)
            elif f.default_factory is not dataclasses.MISSING:
                table[f.name] = ("factory", f.default_factory)
        _defaults[cls] = table
    return table


def _kinds(cls):
    result = {}
    for spec in cls._xml_fields_:
        result[spec.attr] = (spec.kind, spec.many)
    for name in cls._extra_fields_:
        result[name] = (m.STR, False)
    return result


def _encode_scalar(kind, value):
    if kind == m.DEC:
        return format_decimal(value)
    if kind == m.DATE:
        return value.isoformat() if isinstance(value, (datetime.date, datetime.datetime)) else str(value)
    if kind == m.DATETIME:
        return format_datetime(value)
    if kind in (m.INT, m.FLAG):
        return int(value)
    return value


def to_dict(obj):
    """Model object (normally an :class:`~ksef.fa3.model.Invoice`) → JSON-ready dict."""
    cls = type(obj)
    defaults = _class_defaults(cls)
    out = {}
    for name, (kind, many) in _kinds(cls).items():
        value = getattr(obj, name)
        default = defaults.get(name)
        if value is None:
            if default is None or (default[0] == "value" and default[1] is None):
                continue
            if default[0] == "factory" and default[1] is list:
                continue
            out[name] = None
            continue
        if many:
            if not value:
                continue
            if isinstance(kind, str):
                out[name] = [_encode_scalar(kind, v) for v in value]
            else:
                out[name] = [to_dict(v) for v in value]
            continue
        if isinstance(kind, str):
            encoded = _encode_scalar(kind, value)
            if default and default[0] == "value" and default[1] is not None and value == default[1]:
                continue
            out[name] = encoded
        else:
            out[name] = to_dict(value)
    return out


def _decode_scalar(kind, value, path):
    if value is None:
        return None
    try:
        if kind == m.DEC:
            if isinstance(value, float):
                value = repr(value)
            result = Decimal(str(value).strip())
            if not result.is_finite():
                raise ValueError
            return result
        if kind == m.DATE:
            return datetime.date.fromisoformat(str(value))
        if kind == m.DATETIME:
            return parse_datetime(str(value))
        if kind in (m.INT, m.FLAG):
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if not isinstance(value, str):
            raise ValueError
        return value
    except (ValueError, TypeError, InvalidOperation):
        raise XmlParseError("JSON field %s: %r is not a valid %s" % (path, value, kind),
                            params={"reason": "bad_json_value", "path": path, "value": repr(value)}) from None


def from_dict(data, cls=m.Invoice, _path=None):
    """JSON dict → model object (default :class:`~ksef.fa3.model.Invoice`). Raises :class:`XmlParseError`
    (reason ``bad_json_value`` / ``unknown_json_field``) on wrong data."""
    path = _path or cls.__name__
    if not isinstance(data, dict):
        raise XmlParseError("JSON %s must be an object" % path, params={"reason": "bad_json_value", "path": path})
    kinds = _kinds(cls)
    values = {}
    for name, value in data.items():
        if name not in kinds:
            raise XmlParseError("JSON %s: unknown field %r" % (path, name),
                                params={"reason": "unknown_json_field", "path": path, "field": name})
        kind, many = kinds[name]
        sub_path = "%s.%s" % (path, name)
        if value is None:
            values[name] = [] if many else None
        elif many:
            if not isinstance(value, list):
                raise XmlParseError("JSON %s must be a list" % sub_path,
                                    params={"reason": "bad_json_value", "path": sub_path})
            if isinstance(kind, str):
                values[name] = [_decode_scalar(kind, v, "%s[%d]" % (sub_path, i)) for i, v in enumerate(value)]
            else:
                values[name] = [from_dict(v, kind, "%s[%d]" % (sub_path, i)) for i, v in enumerate(value)]
        elif isinstance(kind, str):
            values[name] = _decode_scalar(kind, value, sub_path)
        else:
            values[name] = from_dict(value, kind, sub_path)
    return cls(**values)


def to_json(invoice, indent=2):
    """Model → JSON text."""
    return json.dumps(to_dict(invoice), indent=indent, ensure_ascii=False)


def from_json(data):
    """JSON text/bytes (or an already decoded dict) → :class:`~ksef.fa3.model.Invoice`."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise XmlParseError("Invalid JSON: %s" % exc, params={"reason": "bad_json"}) from None
    return from_dict(data, m.Invoice)
