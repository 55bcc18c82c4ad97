"""``ksef fa3 parse|build|validate|example``: FA(3) invoices on the command line."""
import datetime
import json
import pathlib
import sys

from .. import fa3
from ..errors import KsefError, XmlParseError


def register(subparsers):
    parser = subparsers.add_parser("fa3", help="FA(3) invoices: parse, build, validate")
    sub = parser.add_subparsers(dest="fa3_command", metavar="ACTION", required=True)

    parse = sub.add_parser("parse", help="read an FA(3)/FA(2) XML invoice")
    parse.add_argument("file", metavar="FILE")
    parse.add_argument("--json", action="store_true", help="print the full model as JSON (lossless)")
    parse.set_defaults(func=_parse)

    build = sub.add_parser("build", help="write FA(3) XML from a JSON invoice (as printed by `parse --json`)")
    build.add_argument("file", metavar="FILE.json", help="JSON file, or - for standard input")
    build.add_argument("--compute-totals", action="store_true",
                       help="fill P_13_x/P_14_x/P_14_xW and P_15 from the lines before writing")
    build.add_argument("-o", "--output", metavar="OUT", help="write to OUT instead of standard output")
    build.set_defaults(func=_build)

    validate = sub.add_parser("validate", help="check invoices against the XSD and the business rules")
    validate.add_argument("files", nargs="+", metavar="FILE", help="XML files (or JSON models)")
    validate.add_argument("--today", metavar="YYYY-MM-DD", help="reference date for 'issue date in the future'")
    validate.add_argument("--json", action="store_true", help="machine-readable output")
    validate.add_argument("--lang", choices=("en", "pl"), default="en", help="message language")
    validate.set_defaults(func=_validate)

    example = sub.add_parser("example", help="print a valid example invoice (XML)")
    example.add_argument("--lines", type=int, default=1)
    example.add_argument("--seller", default="9999999999", help="seller NIP")
    example.add_argument("--buyer", default="1111111111", help="buyer NIP")
    example.add_argument("--number", default="FV/2026/1")
    example.add_argument("--currency", default="PLN")
    example.set_defaults(func=_example)


def _read(path):
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise KsefError("cannot read %s: %s" % (path, exc.strerror or exc), code="file_unreadable",
                        params={"path": path}) from None


def _parse(args):
    invoice = fa3.parse(_read(args.file))
    if args.json:
        print(fa3.to_json(invoice))
        return 0
    fa = invoice.fa
    seller = invoice.podmiot1.dane_identyfikacyjne if invoice.podmiot1 else None
    buyer = invoice.podmiot2.dane_identyfikacyjne if invoice.podmiot2 else None
    print("Form:      %s" % invoice.source_form)
    print("Kind:      %s" % fa.rodzaj_faktury)
    print("Number:    %s" % fa.p_2)
    print("Issued:    %s" % fa.p_1)
    if seller:
        print("Seller:    %s %s" % (seller.nip or "", seller.nazwa or ""))
    if buyer:
        ident = buyer.nip or (buyer.kod_ue or "") + (buyer.nr_vat_ue or "") or buyer.nr_id or "-"
        print("Buyer:     %s %s" % (ident, buyer.nazwa or ""))
    print("Lines:     %d" % len(fa.fa_wiersz))
    for bucket, (net, vat, pln) in fa3.rates.bucket_values(fa).items():
        net_el, vat_el, _pln_el = fa3.BUCKET_ELEMENTS[bucket]
        text = "%s=%s" % (net_el, fa3.format_decimal(net) if net is not None else "-")
        if vat is not None:
            text += " %s=%s" % (vat_el, fa3.format_decimal(vat))
        if pln is not None:
            text += " (PLN %s)" % fa3.format_decimal(pln)
        print("           %s" % text)
    print("Total:     %s %s" % (fa3.format_decimal(fa.p_15) if fa.p_15 is not None else "-", fa.kod_waluty))
    return 0


def _build(args):
    invoice = fa3.from_json(_read(args.file))
    if args.compute_totals:
        fa3.apply_summary(invoice)
    data = fa3.build(invoice)
    if args.output:
        pathlib.Path(args.output).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def _validate(args):
    today = datetime.date.fromisoformat(args.today) if args.today else None
    failed = 0
    report = []
    for path in args.files:
        try:
            data = _read(path)
        except KsefError as exc:
            failed += 1
            report.append({"file": path, "valid": False, "issues": [{"path": "", "code": exc.code,
                                                                     "message": str(exc)}]})
            continue
        target = data
        if path.lower().endswith(".json"):
            try:
                target = fa3.from_json(data)
            except XmlParseError as exc:
                failed += 1
                report.append({"file": path, "valid": False, "issues": [{"path": exc.params.get("path", ""),
                                                                         "code": "bad_json",
                                                                         "message": str(exc)}]})
                continue
        issues = fa3.validate(target, today=today)
        valid = not any(i.severity == "error" for i in issues)
        failed += not valid
        report.append({"file": path, "valid": valid, "issues": [
            {"path": i.path, "code": i.code, "severity": i.severity, "value": i.value,
             "message": i.message_pl if args.lang == "pl" else i.message_en} for i in issues]})
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for entry in report:
            errors = sum(i.get("severity", "error") == "error" for i in entry["issues"])
            warnings = len(entry["issues"]) - errors
            print("%s: %s" % (entry["file"], "valid" if entry["valid"] else "INVALID")
                  + (" (%d error(s), %d warning(s))" % (errors, warnings) if entry["issues"] else ""))
            for issue in entry["issues"]:
                shown = "" if issue.get("value") in (None, "") else " [%s]" % issue["value"]
                print("  %-7s %s: %s%s" % (issue.get("severity", "error").upper(), issue["path"] or "-",
                                           issue["message"], shown))
    return 1 if failed else 0


def _example(args):
    invoice = fa3.example_invoice(seller_nip=args.seller, buyer_nip=args.buyer, number=args.number,
                                  lines=args.lines, currency=args.currency)
    sys.stdout.buffer.write(fa3.build(invoice))
    sys.stdout.flush()
    return 0
