"""``ksef qr``: KSeF verification links (KOD I, KOD II) and their QR images."""
import os
import pathlib
import sys

from .. import crypto, qr


def register(subparsers):
    parser = subparsers.add_parser("qr", help="KSeF verification links and QR codes (KOD I / KOD II)")
    sub = parser.add_subparsers(dest="qr_command", metavar="ACTION", required=True)

    inv = sub.add_parser("invoice", help="KOD I: invoice verification link")
    inv.add_argument("--nip", required=True, help="seller NIP (Podmiot1)")
    inv.add_argument("--date", required=True, help="issue date P_1 (YYYY-MM-DD)")
    _hash_args(inv)
    _output_args(inv, default_label=qr.LABEL_OFFLINE)
    inv.set_defaults(func=_invoice)

    cert = sub.add_parser("certificate", help="KOD II: issuer certificate link, signed with an Offline certificate key")
    cert.add_argument("--context-type", required=True, choices=qr.CONTEXT_TYPES)
    cert.add_argument("--context-value", required=True, help="login context identifier (e.g. the NIP)")
    cert.add_argument("--nip", required=True, help="seller NIP (Podmiot1)")
    cert.add_argument("--serial", required=True, help="KSeF certificate serial number (hex)")
    _hash_args(cert)
    cert.add_argument("--key", required=True, type=pathlib.Path,
                      help="private key of the Offline certificate (PEM/DER)")
    cert.add_argument("--password", help="key password (default: $KSEF_KEY_PASSWORD)")
    _output_args(cert, default_label=qr.LABEL_CERTIFICATE)
    cert.set_defaults(func=_certificate)

    ver = sub.add_parser("verify", help="check the signature of a KOD II link with a certificate")
    ver.add_argument("url")
    ver.add_argument("--cert", required=True, type=pathlib.Path, help="certificate (PEM/DER)")
    ver.set_defaults(func=_verify)


def _hash_args(parser):
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--xml", type=pathlib.Path, help="invoice file exactly as sent to KSeF")
    group.add_argument("--hash", help="invoice SHA-256 (KSeF invoiceHash, Base64 or Base64URL)")


def _output_args(parser, default_label):
    parser.add_argument("--env", default="test", help="test, demo, prod or a QR base URL (default: test)")
    parser.add_argument("--png", type=pathlib.Path, help="write a PNG image here")
    parser.add_argument("--svg", type=pathlib.Path, help="write an SVG image here")
    parser.add_argument("--label", default=default_label,
                        help="text under the code (default: %s; the KSeF number once known; '' for none)"
                        % default_label)
    parser.add_argument("--box-size", type=int, default=qr.DEFAULT_BOX_SIZE, help="PNG pixels per module")


def _read(path, what):
    try:
        return path.read_bytes()
    except OSError as exc:
        raise qr.QrError("cannot read the %s file %s: %s" % (what, path, exc.strerror or exc),
                         code="qr_file_unreadable", params={"field": what, "path": str(path)})


def _hash_kwargs(args):
    if args.xml is not None:
        return {"invoice_xml_bytes": _read(args.xml, "xml")}
    return {"invoice_hash": args.hash}


def _emit(args, url):
    print(url)
    if args.png:
        args.png.write_bytes(qr.render_png(url, args.label or None, box_size=args.box_size))
        print("PNG written to %s" % args.png, file=sys.stderr)
    if args.svg:
        args.svg.write_bytes(qr.render_svg(url, args.label or None))
        print("SVG written to %s" % args.svg, file=sys.stderr)
    return 0


def _invoice(args):
    return _emit(args, qr.invoice_url(args.env, args.nip, args.date, **_hash_kwargs(args)))


def _certificate(args):
    password = args.password or os.environ.get("KSEF_KEY_PASSWORD") or None
    key = crypto.load_private_key(_read(args.key, "key"), password)
    kwargs = _hash_kwargs(args)
    url = qr.certificate_url(args.env, args.context_type, args.context_value, args.nip, args.serial,
                             kwargs.get("invoice_hash"), key, invoice_xml_bytes=kwargs.get("invoice_xml_bytes"))
    return _emit(args, url)


def _verify(args):
    cert = crypto.load_certificate(_read(args.cert, "cert"))
    ok = qr.verify_certificate_url(args.url, cert)
    print("signature valid" if ok else "signature INVALID")
    return 0 if ok else 1
