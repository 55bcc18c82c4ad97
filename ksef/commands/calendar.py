"""``ksef calendar``: Polish public holidays, business days and KSeF offline deadlines."""
import json

from .. import calendar as cal

_WEEKDAYS = ("pon", "wt", "śr", "czw", "pt", "sob", "nd")


def register(subparsers):
    parser = subparsers.add_parser("calendar", help="Polish holidays, business days and offline deadlines")
    sub = parser.add_subparsers(dest="calendar_command", metavar="ACTION", required=True)

    hol = sub.add_parser("holidays", help="list the statutory public holidays of a year")
    hol.add_argument("year", type=int)
    hol.add_argument("--json", action="store_true", help="machine-readable output")
    hol.set_defaults(func=_holidays)

    check = sub.add_parser("check", help="is a date a business day? (and the next business day)")
    check.add_argument("date", help="YYYY-MM-DD")
    check.set_defaults(func=_check)

    add = sub.add_parser("add", help="the N-th business day after a date")
    add.add_argument("date", help="YYYY-MM-DD")
    add.add_argument("days", type=int)
    add.set_defaults(func=_add)

    dl = sub.add_parser("deadline", help="deadline to send an offline invoice to KSeF")
    dl.add_argument("mode", choices=cal.MODES)
    dl.add_argument("--issue-date", help="invoice issue date P_1 (offline24)")
    dl.add_argument("--unavailability-end", help="end of the announced KSeF unavailability (date or ISO date-time)")
    dl.add_argument("--failure-end", help="end of the announced KSeF failure (date or ISO date-time)")
    dl.add_argument("--json", action="store_true", help="machine-readable output")
    dl.set_defaults(func=_deadline)


def _holidays(args):
    days = cal.holidays(args.year)
    if args.json:
        print(json.dumps([{"date": d.isoformat(), "name": name, "weekday": d.isoweekday()}
                          for d, name in days.items()], ensure_ascii=False, indent=2))
    else:
        for d, name in days.items():
            print("%s  %-3s  %s" % (d.isoformat(), _WEEKDAYS[d.weekday()], name))
    return 0


def _check(args):
    d = cal.as_date(args.date, "date")
    name = cal.holiday_name(d)
    if cal.is_business_day(d):
        state = "business day"
    elif name:
        state = "holiday (%s)" % name
    else:
        state = "weekend"
    print("%s (%s): %s; next business day: %s" % (
        d.isoformat(), _WEEKDAYS[d.weekday()], state, cal.next_business_day(d).isoformat()))
    return 0


def _add(args):
    print(cal.add_business_days(cal.as_date(args.date, "date"), args.days).isoformat())
    return 0


def _deadline(args):
    deadline = cal.offline_deadline(args.mode, issue_date=args.issue_date,
                                    unavailability_end=args.unavailability_end, failure_end=args.failure_end)
    if args.json:
        print(json.dumps({"mode": args.mode, "deadline": deadline.isoformat() if deadline else None,
                          "date": deadline.date().isoformat() if deadline else None}))
    elif deadline is None:
        print("no obligation to send to KSeF (total failure)")
    else:
        print("%s (end of %s, %s; Europe/Warsaw)" % (
            deadline.isoformat(timespec="seconds"), deadline.date().isoformat(),
            _WEEKDAYS[deadline.weekday()]))
    return 0
