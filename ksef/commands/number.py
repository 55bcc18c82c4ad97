"""``ksef number check N...``: KSeF number, NIP and EU VAT checks."""
import json

from .. import numbers

_REASONS = {
    "bad_length": "wrong length (expected 35 characters, or 36 for a KSeF 1.0 number)",
    "bad_format": "wrong format (expected NNNNNNNNNN-YYYYMMDD-XXXXXXXXXXXX-CC)",
    "bad_date": "the date part is not a valid date",
    "bad_checksum": "the CRC-8 checksum does not match",
    "not_a_string": "not a text value",
}


def register(subparsers):
    parser = subparsers.add_parser("number", help="check KSeF numbers, NIP and EU VAT numbers")
    sub = parser.add_subparsers(dest="number_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate KSeF numbers (35-char with CRC-8, legacy 36-char)")
    check.add_argument("numbers", nargs="+", metavar="N")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=_check)
    nip = sub.add_parser("nip", help="validate Polish NIP numbers")
    nip.add_argument("numbers", nargs="+", metavar="NIP")
    nip.set_defaults(func=_nip)
    vat = sub.add_parser("vat", help="validate EU VAT numbers (with country prefix)")
    vat.add_argument("numbers", nargs="+", metavar="VAT")
    vat.set_defaults(func=_vat)


def _check(args):
    failed = 0
    results = []
    for value in args.numbers:
        try:
            info = numbers.parse_ksef_number(value)
        except ValueError as exc:
            failed += 1
            results.append({"number": value, "valid": False, "reason": str(exc),
                            "message": _REASONS.get(str(exc), str(exc))})
        else:
            results.append({"number": value, "valid": True, "nip": info["nip"],
                            "date": info["date"].isoformat(), "legacy": info["legacy"]})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for res in results:
            if res["valid"]:
                print("%s: valid (seller NIP %s, date %s%s)" % (
                    res["number"], res["nip"], res["date"], ", KSeF 1.0 format" if res["legacy"] else ""))
            else:
                print("%s: INVALID: %s" % (res["number"], res["message"]))
    return 1 if failed else 0


def _nip(args):
    failed = 0
    for value in args.numbers:
        ok = numbers.is_valid_nip(value)
        failed += not ok
        print("%s: %s" % (value, "valid" if ok else "INVALID (format or checksum)"))
    return 1 if failed else 0


def _vat(args):
    failed = 0
    for value in args.numbers:
        ok = numbers.is_valid_eu_vat(value)
        failed += not ok
        print("%s: %s" % (value, "valid format" if ok else "INVALID"))
    return 1 if failed else 0
