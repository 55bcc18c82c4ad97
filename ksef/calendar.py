"""Polish business days and KSeF offline-mode deadlines (DIGEST §12), in Europe/Warsaw time.

Business day: Monday to Friday that is not a statutory public holiday (ustawa o dniach wolnych od pracy).
Saturdays are never business days (also for tax deadlines, Ordynacja podatkowa art. 12 §5).

Statutory holidays: 1 Jan (Nowy Rok), 6 Jan (Trzech Króli, since 2011), Easter Sunday and Monday,
1 May, 3 May, Pentecost Sunday (Easter + 49), Corpus Christi (Easter + 60), 15 Aug, 1 Nov, 11 Nov,
24 Dec (Wigilia, since 2025), 25 Dec, 26 Dec; plus the one-off 12 Nov 2018.

Offline deadlines (all are the END of a day, 23:59:59.999999 Warsaw time):

* ``offline24``      — next business day after the issue date (art. 106nda);
* ``unavailability`` — next business day after the announced unavailability ends (art. 106nh);
* ``failure``        — 7th business day after the announced failure ends (art. 106nf);
* ``total_failure``  — no obligation to send (``None``).

A failure announced while an offline24/unavailability invoice is still waiting moves its deadline to the
failure deadline when that is later: :func:`extend_for_failure`.
"""
import datetime
import functools
import zoneinfo

from .errors import KsefError

WARSAW = zoneinfo.ZoneInfo("Europe/Warsaw")

MODE_OFFLINE24 = "offline24"
MODE_UNAVAILABILITY = "unavailability"
MODE_FAILURE = "failure"
MODE_TOTAL_FAILURE = "total_failure"
MODES = (MODE_OFFLINE24, MODE_UNAVAILABILITY, MODE_FAILURE, MODE_TOTAL_FAILURE)

FAILURE_BUSINESS_DAYS = 7
WIGILIA_FROM_YEAR = 2025
THREE_KINGS_FROM_YEAR = 2011


class CalendarError(KsefError, ValueError):
    """Bad input for a calendar computation (``params`` names the field)."""

    code = "calendar_invalid"


def easter_sunday(year):
    """Gregorian Easter Sunday (anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    year = _check_year(year)
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return datetime.date(year, month, day + 1)


def _check_year(year):
    if isinstance(year, bool) or not isinstance(year, int) or not 1583 <= year <= 9998:
        raise CalendarError("year must be an integer between 1583 and 9998, got %r" % (year,),
                            code="calendar_bad_year", params={"field": "year", "value": year})
    return year


@functools.lru_cache(maxsize=64)
def _holidays(year):
    easter = easter_sunday(year)
    day = datetime.timedelta(days=1)
    items = [
        (datetime.date(year, 1, 1), "Nowy Rok"),
        (easter, "Wielkanoc"),
        (easter + day, "Poniedziałek Wielkanocny"),
        (datetime.date(year, 5, 1), "Święto Pracy"),
        (datetime.date(year, 5, 3), "Święto Narodowe Trzeciego Maja"),
        (easter + 49 * day, "Zielone Świątki"),
        (easter + 60 * day, "Boże Ciało"),
        (datetime.date(year, 8, 15), "Wniebowzięcie Najświętszej Maryi Panny"),
        (datetime.date(year, 11, 1), "Wszystkich Świętych"),
        (datetime.date(year, 11, 11), "Narodowe Święto Niepodległości"),
        (datetime.date(year, 12, 25), "Boże Narodzenie (pierwszy dzień)"),
        (datetime.date(year, 12, 26), "Boże Narodzenie (drugi dzień)"),
    ]
    if year >= THREE_KINGS_FROM_YEAR:
        items.append((datetime.date(year, 1, 6), "Święto Trzech Króli"))
    if year >= WIGILIA_FROM_YEAR:
        items.append((datetime.date(year, 12, 24), "Wigilia Bożego Narodzenia"))
    if year == 2018:
        items.append((datetime.date(2018, 11, 12), "Święto Niepodległości (100-lecie, jednorazowo)"))
    return tuple(sorted(items))


def holidays(year):
    """Statutory public holidays of ``year``: ``{date: Polish name}`` in date order."""
    return dict(_holidays(_check_year(year)))


def as_date(value, field="date"):
    """A ``date`` from a date, a datetime (aware → Warsaw day; naive → taken as Warsaw local) or ISO text."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (datetime.datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text or " " in text
                     else datetime.date.fromisoformat(text))
        except ValueError:
            raise CalendarError("%s: %r is not an ISO date (YYYY-MM-DD) or date-time" % (field, value),
                                code="calendar_bad_date", params={"field": field, "value": value})
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(WARSAW)
        return value.date()
    if isinstance(value, datetime.date):
        return value
    raise CalendarError("%s must be a date, got %r" % (field, value), code="calendar_bad_date",
                        params={"field": field, "value": repr(value)})


def is_holiday(d):
    d = as_date(d)
    return any(h == d for h, _name in _holidays(_check_year(d.year)))


def holiday_name(d):
    """Polish name of the holiday on ``d`` or ``None``."""
    d = as_date(d)
    return dict(_holidays(_check_year(d.year))).get(d)


def is_business_day(d):
    """Monday to Friday and not a statutory holiday."""
    d = as_date(d)
    return d.weekday() < 5 and not is_holiday(d)


def next_business_day(d):
    """The first business day strictly after ``d``."""
    return add_business_days(d, 1)


def add_business_days(d, n):
    """The ``n``-th business day after ``d`` (``n`` < 0: before; ``n`` == 0: ``d`` itself)."""
    d = as_date(d)
    if isinstance(n, bool) or not isinstance(n, int):
        raise CalendarError("the number of business days must be an integer, got %r" % (n,),
                            code="calendar_bad_count", params={"field": "n", "value": repr(n)})
    step = datetime.timedelta(days=1 if n >= 0 else -1)
    remaining = abs(n)
    while remaining:
        d += step
        if is_business_day(d):
            remaining -= 1
    return d


def business_days_between(start, end):
    """Number of business days in ``(start, end]`` (0 when ``end <= start``)."""
    start, end = as_date(start, "start"), as_date(end, "end")
    count = 0
    while start < end:
        start += datetime.timedelta(days=1)
        count += is_business_day(start)
    return count


def end_of_day(d):
    """23:59:59.999999 of ``d`` in Europe/Warsaw (aware)."""
    d = as_date(d)
    return datetime.datetime.combine(d, datetime.time.max, tzinfo=WARSAW)


def offline_deadline(mode, *, issue_date=None, unavailability_end=None, failure_end=None):
    """Deadline to send an offline invoice to KSeF (aware Europe/Warsaw datetime, end of day) or ``None``.

    ``offline24`` needs ``issue_date`` (P_1); ``unavailability`` needs ``unavailability_end``; ``failure``
    needs ``failure_end``; ``total_failure`` returns ``None`` (no obligation). Dates may be ``date``,
    aware or naive (= Warsaw local) ``datetime`` or ISO text. For ``offline24``/``unavailability``, a
    ``failure_end`` given as well applies :func:`extend_for_failure`.
    """
    if mode not in MODES:
        raise CalendarError("unknown offline mode %r (expected one of %s)" % (mode, ", ".join(MODES)),
                            code="calendar_unknown_mode", params={"field": "mode", "value": mode})
    if mode == MODE_TOTAL_FAILURE:
        return None
    if mode == MODE_FAILURE:
        end = _required(failure_end, "failure_end", mode)
        return end_of_day(add_business_days(end, FAILURE_BUSINESS_DAYS))
    if mode == MODE_OFFLINE24:
        base = _required(issue_date, "issue_date", mode)
    else:
        base = _required(unavailability_end, "unavailability_end", mode)
    deadline = end_of_day(next_business_day(base))
    if failure_end is not None:
        deadline = extend_for_failure(deadline, failure_end)
    return deadline


def _required(value, field, mode):
    if value is None or value == "":
        raise CalendarError("offline mode %s needs %s" % (mode, field), code="calendar_missing_input",
                            params={"field": field, "mode": mode})
    return as_date(value, field)


def extend_for_failure(deadline, failure_end):
    """Deadline of a waiting offline24/unavailability invoice after a KSeF failure was announced:
    the later of ``deadline`` and the failure deadline (7th business day after ``failure_end``).
    ``deadline`` ``None`` (total failure: no obligation) stays ``None``."""
    if deadline is None:
        return None
    failure_deadline = offline_deadline(MODE_FAILURE, failure_end=failure_end)
    if isinstance(deadline, datetime.datetime):
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=WARSAW)
    else:
        deadline = end_of_day(deadline)
    return max(deadline.astimezone(WARSAW), failure_deadline)


def is_overdue(deadline, now=None):
    """Whether ``deadline`` (aware datetime or ``None``) has passed at ``now`` (default: current time)."""
    if deadline is None:
        return False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=WARSAW)
    return now > deadline
