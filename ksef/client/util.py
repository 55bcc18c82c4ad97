"""Small helpers of the KSeF client: dates, JWT claims, redacted reprs."""
import base64
import calendar
import datetime
import json
import re

UTC = datetime.timezone.utc

_ISO_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}:?\d{2})?$")


def utcnow():
    return datetime.datetime.now(UTC)


def parse_datetime(value, default_tz=UTC):
    """Parse an ISO-8601 date/datetime as KSeF writes it (``Z``, offsets, up to 7 fraction digits).

    A value without an offset is taken in ``default_tz`` (UTC). Returns an aware datetime, or ``None``
    for ``None``/empty. Raises :class:`ValueError` for unreadable text.
    """
    if value in (None, ""):
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=default_tz)
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=default_tz)
    m = _ISO_RE.match(str(value).strip())
    if not m:
        raise ValueError("not an ISO-8601 date/time: %r" % (value,))
    year, month, day = (int(x) for x in m.group("date").split("-"))
    frac = (m.group("f") or "0")[:6].ljust(6, "0")
    tz = m.group("tz")
    if tz in (None, ""):
        tzinfo = default_tz
    elif tz in ("Z", "z"):
        tzinfo = UTC
    else:
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        tzinfo = datetime.timezone(sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime.datetime(year, month, day, int(m.group("h") or 0), int(m.group("m") or 0),
                             int(m.group("s") or 0), int(frac), tzinfo=tzinfo)


def format_datetime(value):
    """UTC ISO-8601 with milliseconds and ``Z`` (what we send to KSeF)."""
    value = parse_datetime(value)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def add_months(value, months):
    """``value`` plus calendar months (day clamped to the month's length)."""
    month0 = value.month - 1 + months
    year, month = value.year + month0 // 12, month0 % 12 + 1
    day = min(value.day, calendar.monthrange(year, month)[1])
    return value.replace(year=year, month=month, day=day)


def jwt_claims(token):
    """Unverified claims of a JWT (``{}`` when it is not a readable JWT). Never logs the token."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")).decode("utf-8"))
        return claims if isinstance(claims, dict) else {}
    except (AttributeError, IndexError, ValueError, UnicodeDecodeError):
        return {}


def jwt_expiry(token):
    """``exp`` of a JWT as an aware datetime, or ``None``."""
    exp = jwt_claims(token).get("exp")
    try:
        return datetime.datetime.fromtimestamp(float(exp), UTC) if exp is not None else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def redacted(value):
    """How a secret is shown in reprs."""
    return "<redacted>" if value else None
