"""KSeF API commands: ``ksef auth``, ``send``, ``status``, ``upo``, ``fetch``, ``token``, ``permissions``,
``latarnia``, ``logout``.

State (environment, context, credential reference, token state, recent sessions, rate budget) lives in
a 0600 JSON file: ``$KSEF_CLI_STATE`` or ``~/.config/ksef/cli-state.json``. Secrets (KSeF token,
access/refresh tokens, session keys) are stored there but never printed.
"""
import getpass
import json
import os
import pathlib
import sys

from .. import crypto, environments
from ..client import (
    CertificateCredential,
    IncrementalSync,
    KsefClient,
    KsefTokenCredential,
    RateLimiter,
    token_expiry_summary,
)
from ..client.auth import ContextIdentifier
from ..client.client import TOKEN_PERMISSIONS
from ..client.receive import subject_type
from ..client.sessions import InvoiceResult, SessionHandle, send_batch
from ..errors import KsefError

MAX_REMEMBERED_SESSIONS = 20


# ------------------------------------------------------------------------------------------------
# state file
# ------------------------------------------------------------------------------------------------

def state_path():
    env = os.environ.get("KSEF_CLI_STATE")
    if env:
        return pathlib.Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return pathlib.Path(base) / "ksef" / "cli-state.json"


def load_state():
    path = state_path()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": 1}
    except (OSError, ValueError) as exc:
        raise KsefError("cannot read the CLI state %s: %s" % (path, exc), code="cli_state_unreadable") from None


def save_state(state):
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1, sort_keys=True)
    os.chmod(str(tmp), 0o600)
    os.replace(str(tmp), str(path))


def _password(args, state_cred=None):
    if getattr(args, "password", None):
        return args.password
    var = getattr(args, "password_env", None) or (state_cred or {}).get("passwordEnv") or "KSEF_KEY_PASSWORD"
    return os.environ.get(var)


def _credential_from_state(cred):
    if not cred:
        return None
    if cred.get("type") == "token":
        return KsefTokenCredential(cred["token"])
    if cred.get("type") == "certificate":
        password = os.environ.get(cred.get("passwordEnv") or "KSEF_KEY_PASSWORD")
        return CertificateCredential.from_files(cred.get("cert"), cred.get("key"), password,
                                                verify_certificate_chain=cred.get("verifyChain"))
    return None


def make_client(args, state, require_auth=True):
    env = getattr(args, "env", None) or state.get("env") or "test"
    nip = getattr(args, "nip", None) or state.get("nip")
    if require_auth and not nip:
        raise KsefError("no context NIP: run `ksef auth --nip N ...` first", code="cli_not_authenticated")
    limiter = RateLimiter()
    limiter.import_state(state.get("rateLimiter"))

    def on_tokens(tokens):
        state["tokens"] = tokens
        save_state(state)

    same_env = environments.get_environment(env).api_url == state.get("apiUrl")
    credential = None
    try:
        credential = _credential_from_state(state.get("credential")) if same_env else None
    except KsefError as exc:
        print("warning: stored credential unusable (%s)" % exc.code, file=sys.stderr)
    client = KsefClient(env, nip=nip, credential=credential, tokens=state.get("tokens") if same_env else None,
                        on_tokens_changed=on_tokens, rate_limiter=limiter,
                        max_rate_wait=getattr(args, "max_wait", None) or 3600.0)
    return client


def finish(client, state):
    if client.rate_limiter is not None:
        state["rateLimiter"] = client.rate_limiter.export_state()
    save_state(state)


def _remember_session(state, session):
    sessions = [s for s in state.get("sessions") or () if s.get("referenceNumber") != session.reference_number]
    sessions.append(session.to_dict())
    state["sessions"] = sessions[-MAX_REMEMBERED_SESSIONS:]


def _env_arg(parser):
    parser.add_argument("--env", help="test, demo, prod, sandbox or a base URL (default: the one of `ksef auth`)")


# ------------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------------

def register(subparsers):
    auth = subparsers.add_parser("auth", help="log in to KSeF (KSeF token or certificate) and store the session")
    _env_arg(auth)
    auth.add_argument("--nip", required=True, help="context NIP")
    auth.add_argument("--context-type", default="Nip", choices=("Nip", "InternalId", "NipVatUe"),
                      help="login context type (default Nip; --nip then holds the InternalId/NipVatUe value)")
    how = auth.add_mutually_exclusive_group(required=True)
    how.add_argument("--token", help="KSeF token (or '-' to read it from stdin)")
    how.add_argument("--token-file", type=pathlib.Path, help="file holding the KSeF token")
    how.add_argument("--cert", type=pathlib.Path, help="certificate (PEM/DER) or PKCS#12 for XAdES login")
    how.add_argument("--sandbox-token", action="store_true",
                     help="sandbox only: have the sandbox issue a KSeF token for --nip first")
    auth.add_argument("--key", type=pathlib.Path, help="private key (PEM/DER) for --cert")
    auth.add_argument("--password", help="key/PKCS#12 password (prefer --password-env)")
    auth.add_argument("--password-env", default="KSEF_KEY_PASSWORD",
                      help="environment variable holding the key password (default KSEF_KEY_PASSWORD)")
    auth.add_argument("--fingerprint", action="store_true",
                      help="identify by certificate fingerprint instead of the subject's NIP/PESEL")
    auth.add_argument("--allowed-ip", action="append", default=[],
                      help="restrict the access token to this IPv4 address / a-b range / x/nn mask (repeatable)")
    auth.add_argument("--no-store-credential", action="store_true",
                      help="do not keep the KSeF token / certificate paths for automatic re-login")
    auth.set_defaults(func=cmd_auth)

    logout = subparsers.add_parser("logout", help="revoke the stored KSeF login and forget its tokens")
    logout.add_argument("--forget-credential", action="store_true", help="also forget the stored credential")
    logout.set_defaults(func=cmd_logout)

    send = subparsers.add_parser("send", help="send FA(3) invoice files (online session, or --batch)")
    _env_arg(send)
    send.add_argument("files", nargs="+", type=pathlib.Path, metavar="FILE.xml")
    send.add_argument("--batch", action="store_true", help="use a batch session (zip, encrypted parts)")
    send.add_argument("--offline", action="store_true", help="invoices were issued offline (offlineMode=true)")
    send.add_argument("--form", default="FA3", help="form code: FA3 (default), FA2, FA_RR1, PEF3, PEF_KOR3")
    send.add_argument("--no-wait", action="store_true", help="do not wait for the processing results")
    send.add_argument("--part-size", type=int, default=100_000_000, help="batch part size in bytes")
    send.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the results")
    send.add_argument("--json", action="store_true", help="machine-readable output")
    send.set_defaults(func=cmd_send)

    status = subparsers.add_parser("status", help="status of an invoice or a session")
    _env_arg(status)
    status.add_argument("invoice", nargs="?", metavar="INVOICE_REF", help="invoice reference number")
    status.add_argument("--session", metavar="REF", help="session reference (default: the last one sent)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    upo = subparsers.add_parser("upo", help="download a UPO (session or one invoice)")
    _env_arg(upo)
    upo.add_argument("--session", metavar="REF", help="session reference (default: the last one sent)")
    which = upo.add_mutually_exclusive_group()
    which.add_argument("--invoice", metavar="REF", help="invoice reference number")
    which.add_argument("--ksef-number", metavar="N", help="KSeF number of the invoice")
    upo.add_argument("-o", "--output", type=pathlib.Path, help="output file (default: stdout)")
    upo.add_argument("--api", action="store_true", help="use the API with the token instead of the pre-signed URL")
    upo.add_argument("--timeout", type=float, default=120.0)
    upo.set_defaults(func=cmd_upo)

    fetch = subparsers.add_parser("fetch", help="incremental download of received (or issued) invoices")
    _env_arg(fetch)
    fetch.add_argument("--since", help="first run: start date (YYYY-MM-DD or ISO date-time); may be years back")
    fetch.add_argument("--subject", default="buyer", help="buyer (default), seller, third, authorized")
    fetch.add_argument("-o", "--output", type=pathlib.Path, default=pathlib.Path("."), help="target directory")
    fetch.add_argument("--mode", choices=("export", "query"), default="export",
                       help="export packages (default) or metadata query + one download per invoice")
    fetch.add_argument("--metadata-only", action="store_true", help="store only metadata JSON files")
    fetch.add_argument("--restart", action="store_true", help="ignore the stored cursor and start at --since")
    fetch.add_argument("--max-windows", type=int, help="stop after this many windows (resume later)")
    fetch.set_defaults(func=cmd_fetch)

    token = subparsers.add_parser("token", help="manage KSeF tokens (after a certificate login)")
    tsub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = tsub.add_parser("create", help="generate a KSeF token")
    _env_arg(create)
    create.add_argument("--permissions", default="InvoiceRead,InvoiceWrite",
                        help="comma-separated: %s (default InvoiceRead,InvoiceWrite)" % ",".join(TOKEN_PERMISSIONS))
    create.add_argument("--description", required=True, help="5-256 characters")
    out = create.add_mutually_exclusive_group()
    out.add_argument("--show", action="store_true", help="print the new token (it is shown only once)")
    out.add_argument("-o", "--output", type=pathlib.Path, help="write the token to this file (mode 0600)")
    create.add_argument("--use", action="store_true",
                        help="store the token as the CLI credential (default when neither --show nor -o)")
    create.set_defaults(func=cmd_token_create)
    lst = tsub.add_parser("list", help="list KSeF tokens")
    _env_arg(lst)
    lst.add_argument("--status", action="append", choices=("Pending", "Active", "Revoking", "Revoked", "Failed"))
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_token_list)
    revoke = tsub.add_parser("revoke", help="revoke a KSeF token")
    _env_arg(revoke)
    revoke.add_argument("reference", metavar="REF")
    revoke.set_defaults(func=cmd_token_revoke)

    perms = subparsers.add_parser("permissions", help="what the stored login may do in its context")
    _env_arg(perms)
    perms.add_argument("--json", action="store_true")
    perms.set_defaults(func=cmd_permissions)

    lat = subparsers.add_parser("latarnia", help="KSeF status service: AVAILABLE / MAINTENANCE / FAILURE")
    _env_arg(lat)
    lat.add_argument("--messages", action="store_true", help="list all published messages")
    lat.add_argument("--json", action="store_true")
    lat.set_defaults(func=cmd_latarnia)


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------

def cmd_auth(args):
    state = load_state()
    env = environments.get_environment(args.env or state.get("env") or "test")
    stored = None
    if args.sandbox_token:
        if not env.is_sandbox:
            raise KsefError("--sandbox-token works only with the local sandbox", code="cli_not_sandbox")
        token = _sandbox_issue_token(env, args.nip)
        credential, stored = KsefTokenCredential(token), {"type": "token", "token": token}
    elif args.token or args.token_file:
        token = args.token_file.read_text(encoding="utf-8").strip() if args.token_file else args.token
        if token == "-":  # noqa: S105 - "-" means stdin
            token = sys.stdin.readline().strip()
        credential, stored = KsefTokenCredential(token), {"type": "token", "token": token}
    else:
        password = _password(args)
        if password is None and args.key is None and args.cert.suffix.lower() in (".p12", ".pfx"):
            password = getpass.getpass("PKCS#12 password: ")
        credential = CertificateCredential.from_files(
            args.cert, args.key, password,
            subject_identifier_type="certificateFingerprint" if args.fingerprint else "certificateSubject")
        stored = {"type": "certificate", "cert": str(args.cert.resolve()),
                  "key": str(args.key.resolve()) if args.key else None, "passwordEnv": args.password_env}
    policy = _allowed_ips(args.allowed_ip)
    state.update({"env": env.name if not env.is_sandbox else env.root_url, "apiUrl": env.api_url,
                  "nip": args.nip, "tokens": None})
    client = KsefClient(env, context=ContextIdentifier(args.context_type, args.nip), credential=credential,
                        rate_limiter=_limiter(state), authorization_policy=policy)
    tokens = client.authenticate()
    state["tokens"] = tokens.to_dict()
    state["contextType"] = args.context_type
    state["credential"] = None if args.no_store_credential else stored
    finish(client, state)
    print("authenticated in KSeF %s (%s) as %s:%s with a %s; %s" % (
        env.name, env.api_url, args.context_type, args.nip,
        "KSeF token" if isinstance(credential, KsefTokenCredential) else "certificate",
        token_expiry_summary(tokens)))
    print("state saved to %s" % state_path())
    return 0


def _limiter(state):
    limiter = RateLimiter()
    limiter.import_state(state.get("rateLimiter"))
    return limiter


def _allowed_ips(values):
    if not values:
        return None
    ips = {"ip4Addresses": [], "ip4Ranges": [], "ip4Masks": []}
    for value in values:
        key = "ip4Masks" if "/" in value else "ip4Ranges" if "-" in value else "ip4Addresses"
        ips[key].append(value)
    return {"allowedIps": {k: v for k, v in ips.items() if v}}


def _sandbox_issue_token(env, nip):
    import requests
    try:
        resp = requests.post(env.root_url + "/_sandbox/tokens", json={
            "nip": nip, "permissions": ["InvoiceRead", "InvoiceWrite", "CredentialsManage", "CredentialsRead",
                                        "Introspection"], "description": "ksef CLI sandbox token"}, timeout=30)
    except requests.RequestException as exc:
        raise KsefError("cannot reach the sandbox at %s (%s): is `python -m ksef sandbox` running?" % (
            env.root_url, type(exc).__name__), code="cli_sandbox_unreachable") from None
    if resp.status_code >= 300:
        raise KsefError("the sandbox refused to issue a token (HTTP %s)" % resp.status_code, code="cli_sandbox_token")
    return resp.json()["token"]


def cmd_logout(args):
    state = load_state()
    if state.get("tokens"):
        client = make_client(args, state)
        client.logout()
        finish(client, state)
    state["tokens"] = None
    if args.forget_credential:
        state["credential"] = None
    save_state(state)
    print("logged out")
    return 0


def _read_invoice(path):
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KsefError("cannot read %s: %s" % (path, exc.strerror or exc), code="cli_file_unreadable") from None


def cmd_send(args):
    state = load_state()
    client = make_client(args, state)
    files = [(p, _read_invoice(p)) for p in args.files]
    rows = []
    try:
        if args.batch:
            def remember(session):
                _remember_session(state, session)
                save_state(state)
            result = send_batch(client, ((p.name, data) for p, data in files), args.form,
                                offline_mode=args.offline, part_size=args.part_size, wait=not args.no_wait,
                                timeout=args.timeout, on_session=remember)
            for session in result.sessions:
                _remember_session(state, session)
            by_hash = result.by_hash()
            for path, data in files:
                res = by_hash.get(crypto.sha256_b64(data))
                rows.append(_row(path, result.sessions[0].reference_number if result.sessions else None, res))
        else:
            with client.open_online_session(args.form) as session:
                _remember_session(state, session)
                save_state(state)
                sent = []
                for path, data in files:
                    item = session.send(data, offline_mode=args.offline)
                    sent.append((path, item))
                    _remember_session(state, session)
                    save_state(state)
            results = {}
            if not args.no_wait:
                results = session.wait_for_invoices([s.reference_number for _p, s in sent], timeout=args.timeout)
            _remember_session(state, session)
            for path, item in sent:
                res = results.get(item.reference_number)
                row = _row(path, session.reference_number, res)
                row["invoiceReference"] = item.reference_number
                rows.append(row)
    finally:
        finish(client, state)
    _print_rows(rows, args.json)
    return 0 if all((r.get("statusCode") or 0) < 400 for r in rows) else 2


def _row(path, session_ref, res):
    row = {"file": str(path), "session": session_ref}
    if isinstance(res, InvoiceResult):
        row.update({"invoiceReference": res.reference_number, "statusCode": res.status_code,
                    "description": res.description, "ksefNumber": res.ksef_number,
                    "details": res.details, "originalKsefNumber": res.original_ksef_number})
    return row


def _print_rows(rows, as_json):
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        code = row.get("statusCode")
        if code == 200:
            what = "accepted, KSeF number %s" % row.get("ksefNumber")
        elif code is None:
            what = "sent (reference %s), result pending" % row.get("invoiceReference")
        elif code < 200:
            what = "processing (status %s)" % code
        else:
            what = "REJECTED %s %s%s%s" % (code, row.get("description") or "",
                                          (": " + "; ".join(row.get("details") or ())) if row.get("details") else "",
                                          (" (original KSeF number %s)" % row["originalKsefNumber"])
                                          if row.get("originalKsefNumber") else "")
        print("%s: %s [session %s]" % (row["file"], what, row.get("session")))


def _session_ref(args, state):
    if args.session:
        return args.session
    sessions = state.get("sessions") or []
    invoice = getattr(args, "invoice", None)
    if invoice:
        for s in reversed(sessions):
            if invoice in (s.get("sent") or {}).values():
                return s["referenceNumber"]
    if sessions:
        return sessions[-1]["referenceNumber"]
    raise KsefError("no session given and none remembered: use --session REF", code="cli_no_session")


def cmd_status(args):
    state = load_state()
    client = make_client(args, state)
    try:
        handle = SessionHandle(client, _session_ref(args, state))
        if args.invoice:
            res = handle.invoice_status(args.invoice)
            out = {k: v for k, v in res.raw.items() if k not in ("upoDownloadUrl",)}
            if args.json:
                print(json.dumps(out, indent=2, ensure_ascii=False))
            else:
                print("invoice %s in session %s: status %s %s%s" % (
                    res.reference_number, handle.reference_number, res.status_code, res.description or "",
                    (", KSeF number %s" % res.ksef_number) if res.ksef_number else ""))
                for detail in res.details:
                    print("  - %s" % detail)
                if res.original_ksef_number:
                    print("  original KSeF number: %s" % res.original_ksef_number)
            return 0
        status = handle.status()
        invoices = list(handle.invoices())
    finally:
        finish(client, state)
    if args.json:
        status = dict(status)
        status.pop("upo", None)
        print(json.dumps({"session": status, "invoices": [
            {k: v for k, v in i.raw.items() if k != "upoDownloadUrl"} for i in invoices]}, indent=2,
            ensure_ascii=False))
        return 0
    info = status.get("status") or {}
    print("session %s: status %s %s; invoices %s (ok %s, failed %s)" % (
        handle.reference_number, info.get("code"), info.get("description") or "", status.get("invoiceCount"),
        status.get("successfulInvoiceCount"), status.get("failedInvoiceCount")))
    for inv in invoices:
        print("  %s %s %s %s" % (inv.reference_number, inv.status_code, inv.ksef_number or "-",
                                 inv.invoice_number or inv.invoice_file_name or ""))
    return 0


def cmd_upo(args):
    state = load_state()
    client = make_client(args, state)
    try:
        handle = SessionHandle(client, _session_ref(args, state))
        if args.invoice or args.ksef_number:
            pages = [handle.invoice_upo(args.invoice, args.ksef_number, via_url=not args.api, timeout=args.timeout)]
        else:
            pages = handle.session_upo(timeout=args.timeout, via_url=not args.api)
    finally:
        finish(client, state)
    if args.output:
        if len(pages) == 1:
            args.output.write_bytes(pages[0])
            print("UPO written to %s" % args.output)
        else:
            for index, page in enumerate(pages, 1):
                target = args.output.with_name("%s-%d%s" % (args.output.stem, index, args.output.suffix or ".xml"))
                target.write_bytes(page)
                print("UPO page %d written to %s" % (index, target))
    else:
        for page in pages:
            sys.stdout.buffer.write(page)
            if not page.endswith(b"\n"):
                sys.stdout.buffer.write(b"\n")
    return 0


def cmd_fetch(args):
    state = load_state()
    client = make_client(args, state)
    subject = subject_type(args.subject)
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    cursor_file = out / (".ksef-cursor-%s.json" % subject)
    cursor = None
    if cursor_file.exists() and not args.restart:
        cursor = json.loads(cursor_file.read_text(encoding="utf-8"))
    if cursor is None and not args.since:
        raise KsefError("first fetch into %s: give --since DATE" % out, code="cli_since_required")

    def save_cursor(cur):
        tmp = cursor_file.with_name(cursor_file.name + ".tmp")
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(cur, fh)
        os.replace(str(tmp), str(cursor_file))

    sync = IncrementalSync(client, subject, cursor, start=args.since, mode=args.mode,
                           only_metadata=args.metadata_only, on_cursor=None)
    count = new = 0
    try:
        for invoice in sync.run(max_windows=args.max_windows):
            count += 1
            target = out / ("%s.xml" % invoice.ksef_number)
            if invoice.xml is not None and not target.exists():
                target.write_bytes(invoice.xml)
                new += 1
            if invoice.metadata is not None:
                (out / ("%s.json" % invoice.ksef_number)).write_text(
                    json.dumps(invoice.metadata, ensure_ascii=False, indent=1), encoding="utf-8")
            save_cursor(sync.cursor)
        save_cursor(sync.cursor)
    finally:
        finish(client, state)
    print("%d invoice(s) received (%d new files) into %s; %d window(s), %d export(s); next start %s" % (
        count, new, out, sync.stats["windows"], sync.stats["exports"], sync.cursor["from"]))
    return 0


def cmd_token_create(args):
    state = load_state()
    client = make_client(args, state)
    permissions = [p.strip() for p in args.permissions.split(",") if p.strip()]
    try:
        result = client.create_token(permissions, args.description)
    finally:
        finish(client, state)
    print("KSeF token %s created (%s), permissions %s" % (result["referenceNumber"], result["status"],
                                                          ",".join(permissions)))
    if args.show:
        print(result["token"])
    elif args.output:
        fd = os.open(str(args.output), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(result["token"] + "\n")
        print("token written to %s" % args.output)
    if args.use or not (args.show or args.output):
        state["credential"] = {"type": "token", "token": result["token"]}
        save_state(state)
        print("the CLI will log in with this token from now on")
    return 0


def cmd_token_list(args):
    state = load_state()
    client = make_client(args, state)
    try:
        tokens = list(client.list_tokens(status=args.status))
    finally:
        finish(client, state)
    if args.json:
        print(json.dumps(tokens, indent=2, ensure_ascii=False))
        return 0
    for tok in tokens:
        print("%s %-9s %s [%s] %s" % (tok.get("referenceNumber"), tok.get("status"), tok.get("dateCreated"),
                                      ",".join(tok.get("requestedPermissions") or ()), tok.get("description")))
    if not tokens:
        print("no tokens")
    return 0


def cmd_token_revoke(args):
    state = load_state()
    client = make_client(args, state)
    try:
        client.revoke_token(args.reference)
    finally:
        finish(client, state)
    print("token %s revoked" % args.reference)
    return 0


def cmd_permissions(args):
    state = load_state()
    client = make_client(args, state)
    try:
        info = client.current_permissions()
    finally:
        finish(client, state)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("permissions in %s (source: %s): %s" % (client.context, info["source"], ", ".join(info["permissions"])
                                                  or "none"))
    if info["missing"]:
        print("WARNING: missing %s" % ", ".join(info["missing"]))
    return 0


def cmd_latarnia(args):
    state = load_state()
    env = environments.get_environment(args.env or state.get("env") or "test")
    if not env.latarnia_url:
        raise KsefError("no status service known for %s" % env.name, code="cli_no_latarnia")
    from ..client.latarnia import LatarniaClient
    lat = LatarniaClient(env.latarnia_url)
    data = lat.messages() if args.messages else lat.status()
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    messages = data if args.messages else data["messages"]
    if not args.messages:
        print("KSeF %s: %s" % (env.name, data["status"]))
    for msg in messages:
        print("  [%s] %s%s: %s" % (msg.get("category") or msg.get("type") or "-", msg.get("title") or "",
                                   (" (%s .. %s)" % (msg.get("start"), msg.get("end") or "")) if msg.get("start")
                                   else "", msg.get("text") or ""))
    return 0 if args.messages or data["status"] == "AVAILABLE" else 3


__all__ = ["register"]
