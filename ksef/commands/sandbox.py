"""``ksef sandbox``: run the local KSeF 2.0 sandbox; ``ksef sandbox seed``: load purchase invoices."""
import json
import os
import signal
import sys

DEFAULT_DATA_DIR = "~/.local/share/ksef-sandbox"


def register(subparsers):
    parser = subparsers.add_parser(
        "sandbox", help="run a local KSeF 2.0 sandbox server (API v2, Latarnia status, QR pages)",
        description="Run a local KSeF 2.0 emulator. API: http://HOST:PORT/v2, status: /latarnia, "
                    "admin/fault injection: /_sandbox (see the docstring of ksef.sandbox).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    parser.add_argument("--data-dir", default=None,
                        help="where invoices, sessions and keys are kept (default %s)" % DEFAULT_DATA_DIR)
    parser.add_argument("--rate-limits", default="production",
                        help="'production' (official limits, default), 'off', or a JSON object of groups")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC",
                        help="fault to inject, e.g. 'latency:seconds=2,path=/sessions' or "
                             "'error:status=503,count=3' (repeatable)")
    parser.add_argument("--fault-seed", type=int, default=None, help="seed of the fault random generator")
    parser.add_argument("--status", choices=("AVAILABLE", "MAINTENANCE", "FAILURE", "TOTAL_FAILURE"),
                        default=None, help="initial Latarnia status")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="behaviour setting (e.g. auth_delay=1, prd_like=true, sign_upo=true); repeatable")
    parser.set_defaults(func=_serve)
    sub = parser.add_subparsers(dest="sandbox_command", metavar="ACTION")
    seed = sub.add_parser("seed", help="load purchase invoices addressed to a buyer NIP")
    seed.add_argument("--nip", required=True, help="buyer NIP (Podmiot2) the invoices are addressed to")
    seed.add_argument("--count", type=int, default=20, help="number of generated invoices (default 20)")
    seed.add_argument("--from-dir", default=None, help="also load every *.xml of this directory (placeholders "
                                                       "#nip#, #buyer_nip#, #invoice_number#... are filled in)")
    seed.add_argument("--seed", type=int, default=None, help="random seed for reproducible invoices")
    seed.add_argument("--data-dir", default=None, help="data directory of the sandbox (default %s)"
                      % DEFAULT_DATA_DIR)
    seed.add_argument("--url", default=None, help="seed a running sandbox through its admin API instead "
                                                  "(e.g. http://127.0.0.1:8765)")
    seed.set_defaults(func=_seed)


def _parse_value(text):
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    try:
        return json.loads(text)
    except ValueError:
        return text


def _data_dir(value):
    return os.path.abspath(os.path.expanduser(value or os.environ.get("KSEF_SANDBOX_DATA") or DEFAULT_DATA_DIR))


def _serve(args):
    from ..sandbox import SandboxServer
    from ..sandbox.app import SandboxConfig
    from ..sandbox.faults import parse_cli

    rate_limits = args.rate_limits
    if rate_limits not in ("production", "off"):
        try:
            rate_limits = json.loads(rate_limits)
        except ValueError:
            print("error: --rate-limits must be 'production', 'off' or a JSON object", file=sys.stderr)
            return 2
    config = SandboxConfig()
    try:
        for item in args.config:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError("--config expects KEY=VALUE, got %r" % item)
            config.update({key.strip(): _parse_value(value)})
        faults = [parse_cli(spec) for spec in args.fault]
        server = SandboxServer(host=args.host, port=args.port, data_dir=_data_dir(args.data_dir),
                               rate_limits=rate_limits, config=config, status=args.status)
        if faults:
            server.sandbox.faults.add(faults, seed=args.fault_seed)
    except (ValueError, TypeError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print("error: cannot listen on %s:%s: %s" % (args.host, args.port, exc), file=sys.stderr)
        return 1
    url = server.url
    print("KSeF sandbox listening on %s" % url)
    print("  API (v2):        %s/v2" % url)
    print("  Latarnia status: %s/latarnia/status" % url)
    print("  QR pages:        %s/qr" % url)
    print("  admin API:       %s/_sandbox" % url)
    print("  data directory:  %s" % server.sandbox.data_dir)
    print("  rate limits:     %s" % server.sandbox.limiter.mode_name)
    sys.stdout.flush()

    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopping")
    return 0


def _seed(args):
    if args.url:
        import requests

        payload = {"buyerNip": args.nip, "count": args.count, "seed": args.seed}
        if args.from_dir:
            import base64
            import glob

            payload["xml"] = []
            for path in sorted(glob.glob(os.path.join(args.from_dir, "**", "*.xml"), recursive=True)):
                with open(path, "rb") as fh:
                    payload["xml"].append(base64.b64encode(fh.read()).decode("ascii"))
        resp = requests.post(args.url.rstrip("/") + "/_sandbox/seed", json=payload, timeout=3600)
        if resp.status_code >= 400:
            print("error: %s" % resp.text, file=sys.stderr)
            return 1
        numbers = resp.json()["ksefNumbers"]
    else:
        from ..sandbox import Sandbox
        from ..sandbox.seed import seed_invoices

        sandbox = Sandbox(_data_dir(args.data_dir))
        try:
            numbers = seed_invoices(sandbox, args.nip, count=args.count, seed=args.seed, from_dir=args.from_dir)
        except ValueError as exc:
            print("error: %s" % exc, file=sys.stderr)
            return 1
        finally:
            sandbox.close()
    print("seeded %d invoices for buyer %s" % (len(numbers), args.nip))
    for number in numbers[:10]:
        print("  %s" % number)
    if len(numbers) > 10:
        print("  ...")
    return 0
