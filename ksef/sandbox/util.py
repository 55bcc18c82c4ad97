"""Small helpers of the sandbox: clock, date formats, reference numbers, JWT, Warsaw time."""
import base64
import datetime
import hashlib
import hmac
import json
import os
import threading
import time

from ..numbers import crc8

UTC = datetime.timezone.utc

try:  # pragma: no cover - depends on the system tz database
    from zoneinfo import ZoneInfo

    WARSAW = ZoneInfo("Europe/Warsaw")
except Exception:
    WARSAW = None


def now():
    return datetime.datetime.now(UTC)


def _last_sunday(year, month):
    day = datetime.date(year, month, 31)
    return day - datetime.timedelta(days=(day.weekday() + 1) % 7)


def to_warsaw(moment):
    """Convert an aware datetime to Europe/Warsaw local time (aware)."""
    if WARSAW is not None:
        return moment.astimezone(WARSAW)
    moment = moment.astimezone(UTC)
    start = datetime.datetime.combine(_last_sunday(moment.year, 3), datetime.time(1), UTC)
    end = datetime.datetime.combine(_last_sunday(moment.year, 10), datetime.time(1), UTC)
    offset = 2 if start <= moment < end else 1
    return moment.astimezone(datetime.timezone(datetime.timedelta(hours=offset)))


def warsaw_localize(naive):
    """Interpret a naive datetime as Europe/Warsaw local time."""
    if WARSAW is not None:
        return naive.replace(tzinfo=WARSAW)
    guess = naive.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    return naive.replace(tzinfo=to_warsaw(guess).tzinfo)


def iso(moment):
    """ISO-8601 in UTC with microseconds, fixed width (sortable as text)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def iso_warsaw_ms(moment):
    """UPO style: local Warsaw time with milliseconds and offset, e.g. 2025-09-16T11:05:40.841+02:00."""
    local = to_warsaw(moment)
    text = local.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d" % (local.microsecond // 1000)
    off = local.utcoffset() or datetime.timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return "%s%s%02d:%02d" % (text, sign, minutes // 60, minutes % 60)


def parse_iso(text):
    """Parse an ISO-8601 date-time; ``Z``, an offset or none (= Europe/Warsaw). Raises ValueError."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty date")
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Python < 3.11 accepts at most 6 fractional digits: trim longer fractions (.NET prints 7)
    if "." in value:
        head, _, tail = value.partition(".")
        digits = ""
        rest = tail
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        value = "%s.%s%s" % (head, (digits + "000000")[:6], rest)
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = warsaw_localize(moment)
    return moment.astimezone(UTC)


def from_db(text):
    return datetime.datetime.fromisoformat(text) if text else None


def b64(data):
    return base64.b64encode(data).decode("ascii")


def b64url(data):
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_ref_lock = threading.Lock()
_ref_counter = [int.from_bytes(os.urandom(3), "big")]


def reference_number(kind, moment=None):
    """36-char reference number ``YYYYMMDD-KK-XXXXXXXXXX-XXXXXXXXXX-CC`` (CC = CRC-8 of the rest)."""
    moment = moment or now()
    with _ref_lock:
        _ref_counter[0] = (_ref_counter[0] + 1) & 0xFFFFFF
        counter = _ref_counter[0]
    part1 = "%010X" % ((int(time.time() * 1000) & 0xFFFFFFFF) << 8 | (counter & 0xFF))
    part1 = part1[-10:]
    part2 = os.urandom(5).hex().upper()
    head = "%s-%s-%s-%s" % (moment.strftime("%Y%m%d"), kind, part1, part2)
    return "%s-%02X" % (head, crc8(head.encode("ascii")))


# --------------------------------------------------------------------------------------------
# JWT (HS256) - the sandbox signs its own tokens
# --------------------------------------------------------------------------------------------

def jwt_encode(claims, secret):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = ("%s.%s" % (header, payload)).encode("ascii")
    sig = b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return "%s.%s.%s" % (header, payload, sig)


def jwt_decode(token, secret):
    """Return the claims of a token signed by ``secret``; ``None`` when malformed or forged.

    Expiry is NOT checked here (callers distinguish expired from invalid).
    """
    try:
        header, payload, sig = token.split(".")
        expected = b64url(hmac.new(secret, ("%s.%s" % (header, payload)).encode("ascii"),
                                   hashlib.sha256).digest())
        if not hmac.compare_digest(expected, sig):
            return None
        return json.loads(b64url_decode(payload))
    except (ValueError, TypeError, UnicodeDecodeError):
        return None


def sign_blob(secret, text):
    return b64url(hmac.new(secret, text.encode("utf-8"), hashlib.sha256).digest())[:32]
