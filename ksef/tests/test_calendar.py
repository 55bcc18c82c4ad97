"""Polish holidays, business days and offline deadlines (ksef.calendar) and the ``ksef calendar`` CLI."""
import datetime
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ksef import calendar as cal
from ksef.cli import main

D = datetime.date
UTC = datetime.timezone.utc

EASTER = {2025: D(2025, 4, 20), 2026: D(2026, 4, 5), 2027: D(2027, 3, 28), 2028: D(2028, 4, 16),
          2029: D(2029, 4, 1), 2030: D(2030, 4, 21)}
# (Easter Monday, Pentecost Sunday, Corpus Christi) from published Polish calendars
MOVABLE = {
    2025: ("04-21", "06-08", "06-19"),
    2026: ("04-06", "05-24", "06-04"),
    2027: ("03-29", "05-16", "05-27"),
    2028: ("04-17", "06-04", "06-15"),
    2029: ("04-02", "05-20", "05-31"),
    2030: ("04-22", "06-09", "06-20"),
}
FIXED = ("01-01", "01-06", "05-01", "05-03", "08-15", "11-01", "11-11", "12-24", "12-25", "12-26")


def _d(year, mmdd):
    return D.fromisoformat("%d-%s" % (year, mmdd))


@pytest.mark.parametrize("year", sorted(EASTER))
def test_holidays_known_dates(year):
    expected = {_d(year, x) for x in FIXED} | {EASTER[year]} | {_d(year, x) for x in MOVABLE[year]}
    days = cal.holidays(year)
    assert set(days) == expected
    assert len(days) == 14
    assert list(days) == sorted(days)
    assert cal.easter_sunday(year) == EASTER[year]
    assert days[EASTER[year]] == "Wielkanoc"
    assert days[_d(year, MOVABLE[year][2])] == "Boże Ciało"
    assert days[_d(year, "12-24")] == "Wigilia Bożego Narodzenia"


def test_wigilia_only_from_2025():
    assert D(2024, 12, 24) not in cal.holidays(2024)
    assert cal.is_business_day(D(2024, 12, 24))  # a Tuesday
    assert not cal.is_business_day(D(2025, 12, 24))  # a Wednesday, holiday since 2025
    assert cal.holiday_name(D(2025, 12, 24)) == "Wigilia Bożego Narodzenia"
    assert len(cal.holidays(2024)) == 13


def test_historical_rules():
    assert D(2010, 1, 6) not in cal.holidays(2010)
    assert D(2011, 1, 6) in cal.holidays(2011)
    assert D(2018, 11, 12) in cal.holidays(2018)
    assert D(2019, 11, 12) not in cal.holidays(2019)
    assert cal.easter_sunday(2000) == D(2000, 4, 23)
    assert cal.easter_sunday(2038) == D(2038, 4, 25)  # latest possible date
    assert cal.easter_sunday(2285) == D(2285, 3, 22)  # earliest possible date


def test_holidays_returns_a_copy():
    days = cal.holidays(2026)
    days.clear()
    assert len(cal.holidays(2026)) == 14


@pytest.mark.parametrize(("day", "expected"), [
    (D(2026, 1, 2), True),     # Friday after New Year
    (D(2026, 1, 3), False),    # Saturday
    (D(2026, 1, 4), False),    # Sunday
    (D(2026, 1, 6), False),    # Trzech Króli (Tuesday)
    (D(2026, 4, 6), False),    # Easter Monday
    (D(2026, 6, 4), False),    # Corpus Christi (Thursday)
    (D(2026, 6, 5), True),     # the "bridge" Friday is still a business day
    (D(2026, 8, 15), False),   # Saturday holiday
    (D(2026, 11, 10), True),
])
def test_is_business_day(day, expected):
    assert cal.is_business_day(day) is expected


def test_add_business_days():
    assert cal.add_business_days(D(2026, 4, 30), 0) == D(2026, 4, 30)
    assert cal.add_business_days(D(2026, 4, 30), 1) == D(2026, 5, 4)
    assert cal.add_business_days(D(2026, 4, 30), 3) == D(2026, 5, 6)
    assert cal.add_business_days(D(2026, 5, 4), -1) == D(2026, 4, 30)
    assert cal.add_business_days(D(2026, 12, 23), 1) == D(2026, 12, 28)
    assert cal.next_business_day(D(2026, 12, 31)) == D(2027, 1, 4)
    assert cal.business_days_between(D(2026, 4, 30), D(2026, 5, 6)) == 3
    assert cal.business_days_between(D(2026, 5, 6), D(2026, 4, 30)) == 0


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=D(2000, 1, 1), max_value=D(2100, 12, 31)), st.integers(min_value=0, max_value=15))
def test_add_business_days_properties(day, n):
    result = cal.add_business_days(day, n)
    assert result >= day
    assert cal.business_days_between(day, result) == n
    if n:
        assert cal.is_business_day(result)
        assert cal.add_business_days(result, -n) <= day or not cal.is_business_day(day)
    nxt = cal.next_business_day(day)
    assert nxt > day and cal.is_business_day(nxt)
    assert all(not cal.is_business_day(day + datetime.timedelta(days=i)) for i in range(1, (nxt - day).days))


# --------------------------------------------------------------------------------------------
# Offline deadlines
# --------------------------------------------------------------------------------------------

def _end(y, m, d):
    return datetime.datetime(y, m, d, 23, 59, 59, 999999, tzinfo=cal.WARSAW)


@pytest.mark.parametrize(("issue", "deadline"), [
    (D(2026, 1, 7), D(2026, 1, 8)),      # Wednesday → Thursday
    (D(2026, 1, 9), D(2026, 1, 12)),     # Friday → Monday
    (D(2026, 1, 10), D(2026, 1, 12)),    # Saturday → Monday
    (D(2026, 4, 30), D(2026, 5, 4)),     # before the 1-3 May long weekend
    (D(2026, 4, 3), D(2026, 4, 7)),      # Good Friday → Tuesday after Easter Monday
    (D(2026, 12, 23), D(2026, 12, 28)),  # Wigilia + Christmas + weekend
    (D(2025, 12, 23), D(2025, 12, 29)),
    (D(2024, 12, 23), D(2024, 12, 24)),  # 24 Dec 2024 was still a business day
    (D(2026, 12, 31), D(2027, 1, 4)),    # New Year + weekend
    (D(2027, 1, 5), D(2027, 1, 7)),      # Trzech Króli (Wednesday) skipped
])
def test_offline24_deadline(issue, deadline):
    result = cal.offline_deadline(cal.MODE_OFFLINE24, issue_date=issue)
    assert result == _end(deadline.year, deadline.month, deadline.day)
    assert result.tzinfo is cal.WARSAW
    assert (result.hour, result.minute, result.second, result.microsecond) == (23, 59, 59, 999999)


def test_deadline_utc_offsets_around_dst():
    spring = cal.offline_deadline("offline24", issue_date=D(2026, 3, 27))  # DST starts Sun 29 Mar 2026
    assert spring.date() == D(2026, 3, 30)
    assert spring.utcoffset() == datetime.timedelta(hours=2)
    assert spring.astimezone(UTC) == datetime.datetime(2026, 3, 30, 21, 59, 59, 999999, tzinfo=UTC)
    autumn = cal.offline_deadline("offline24", issue_date=D(2026, 10, 23))  # DST ends Sun 25 Oct 2026
    assert autumn.date() == D(2026, 10, 26)
    assert autumn.astimezone(UTC) == datetime.datetime(2026, 10, 26, 22, 59, 59, 999999, tzinfo=UTC)


def test_unavailability_deadline_uses_warsaw_day():
    # 2026-03-29 01:30 UTC is 03:30 CEST, just after the DST switch, on a Sunday
    end = datetime.datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert cal.offline_deadline("unavailability", unavailability_end=end) == _end(2026, 3, 30)
    # 23:30 UTC on Thursday 5 March is already Friday 6 March in Warsaw
    late = datetime.datetime(2026, 3, 5, 23, 30, tzinfo=UTC)
    assert cal.offline_deadline("unavailability", unavailability_end=late) == _end(2026, 3, 9)
    # naive datetimes are Warsaw local time; ISO text is accepted too
    assert cal.offline_deadline("unavailability", unavailability_end=datetime.datetime(2026, 3, 5, 23, 30)) \
        == _end(2026, 3, 6)
    assert cal.offline_deadline("unavailability", unavailability_end="2026-03-05T23:30:00Z") == _end(2026, 3, 9)


@pytest.mark.parametrize(("failure_end", "deadline"), [
    (D(2026, 4, 30), D(2026, 5, 12)),     # 1 May holiday, 3 May Sunday: 4-8, 11, 12
    (datetime.datetime(2026, 3, 5, 23, 30, tzinfo=UTC), D(2026, 3, 17)),  # = Friday 6 March in Warsaw
    (D(2026, 12, 18), D(2026, 12, 31)),   # 21, 22, 23, (24-27 off), 28, 29, 30, 31
    (D(2026, 5, 29), D(2026, 6, 10)),     # Corpus Christi 4 June skipped
])
def test_failure_deadline(failure_end, deadline):
    result = cal.offline_deadline(cal.MODE_FAILURE, failure_end=failure_end)
    assert result == _end(deadline.year, deadline.month, deadline.day)
    assert cal.business_days_between(cal.as_date(failure_end), result.date()) == 7


def test_total_failure_has_no_deadline():
    assert cal.offline_deadline(cal.MODE_TOTAL_FAILURE) is None
    assert cal.extend_for_failure(None, D(2026, 1, 5)) is None
    assert not cal.is_overdue(None)


def test_failure_announced_while_waiting_extends_deadline():
    base = cal.offline_deadline("offline24", issue_date=D(2026, 6, 1))
    assert base == _end(2026, 6, 2)
    # failure ends 1 June: 2, 3, (4 Corpus Christi), 5, 8, 9, 10, 11 → the later deadline wins
    assert cal.extend_for_failure(base, D(2026, 6, 1)) == _end(2026, 6, 11)
    # a failure that ended long before cannot shorten the deadline
    assert cal.extend_for_failure(base, D(2026, 5, 20)) == base
    # the same through offline_deadline(..., failure_end=...)
    assert cal.offline_deadline("offline24", issue_date=D(2026, 6, 1), failure_end=D(2026, 6, 1)) == _end(2026, 6, 11)
    assert cal.offline_deadline("unavailability", unavailability_end=D(2026, 6, 1),
                                failure_end=D(2026, 6, 1)) == _end(2026, 6, 11)
    # plain dates and naive datetimes as the current deadline
    assert cal.extend_for_failure(D(2026, 6, 2), D(2026, 6, 1)) == _end(2026, 6, 11)
    assert cal.extend_for_failure(datetime.datetime(2026, 6, 20, 12, 0), D(2026, 6, 1)) == \
        datetime.datetime(2026, 6, 20, 12, 0, tzinfo=cal.WARSAW)


def test_is_overdue():
    deadline = cal.offline_deadline("offline24", issue_date=D(2026, 1, 7))
    assert not cal.is_overdue(deadline, datetime.datetime(2026, 1, 8, 22, 59, tzinfo=UTC))
    assert cal.is_overdue(deadline, datetime.datetime(2026, 1, 8, 23, 0, tzinfo=UTC))  # = 00:00 Warsaw


@pytest.mark.parametrize(("mode", "kwargs", "code", "field"), [
    ("offline24", {}, "calendar_missing_input", "issue_date"),
    ("unavailability", {"issue_date": D(2026, 1, 1)}, "calendar_missing_input", "unavailability_end"),
    ("failure", {"issue_date": D(2026, 1, 1)}, "calendar_missing_input", "failure_end"),
    ("offline", {"issue_date": D(2026, 1, 1)}, "calendar_unknown_mode", "mode"),
    ("offline24", {"issue_date": "2026-13-01"}, "calendar_bad_date", "issue_date"),
    ("offline24", {"issue_date": 20260101}, "calendar_bad_date", "issue_date"),
])
def test_deadline_errors(mode, kwargs, code, field):
    with pytest.raises(cal.CalendarError) as excinfo:
        cal.offline_deadline(mode, **kwargs)
    assert excinfo.value.code == code
    assert excinfo.value.params["field"] == field
    assert isinstance(excinfo.value, ValueError)


def test_bad_year_and_count():
    with pytest.raises(cal.CalendarError) as excinfo:
        cal.holidays(1500)
    assert excinfo.value.code == "calendar_bad_year"
    with pytest.raises(cal.CalendarError):
        cal.holidays("2026")
    with pytest.raises(cal.CalendarError) as excinfo:
        cal.add_business_days(D(2026, 1, 1), 1.5)
    assert excinfo.value.code == "calendar_bad_count"


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def test_cli_holidays(capsys):
    assert main(["calendar", "holidays", "2026"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 14
    assert lines[0].startswith("2026-01-01") and "Nowy Rok" in lines[0]
    assert any(line.startswith("2026-12-24") and "Wigilia" in line for line in lines)
    assert main(["calendar", "holidays", "2026", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[2] == {"date": "2026-04-05", "name": "Wielkanoc", "weekday": 7}


def test_cli_deadline(capsys):
    assert main(["calendar", "deadline", "offline24", "--issue-date", "2026-12-23"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2026-12-28T23:59:59+01:00")
    assert main(["calendar", "deadline", "failure", "--failure-end", "2026-04-30", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["date"] == "2026-05-12"
    assert data["deadline"] == "2026-05-12T23:59:59.999999+02:00"
    assert main(["calendar", "deadline", "total_failure"]) == 0
    assert "no obligation" in capsys.readouterr().out


def test_cli_deadline_missing_input(capsys):
    assert main(["calendar", "deadline", "unavailability"]) == 1
    assert "unavailability_end" in capsys.readouterr().err


def test_cli_check_and_add(capsys):
    assert main(["calendar", "check", "2026-05-01"]) == 0
    out = capsys.readouterr().out
    assert "Święto Pracy" in out and "2026-05-04" in out
    assert main(["calendar", "add", "2026-04-30", "3"]) == 0
    assert capsys.readouterr().out.strip() == "2026-05-06"
