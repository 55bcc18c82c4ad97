"""Core of the sandbox: configuration, routing, authentication, KSeF tokens, limits."""
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .. import crypto
from ..numbers import is_valid_nip
from . import faults as faults_mod
from . import ratelimit
from .admin import AdminMixin
from .http import Fail, Response, too_many_requests
from .invoicing import InvoicingMixin
from .keys import SandboxKeys
from .receiving import ReceivingMixin
from .store import Store
from .util import b64, from_db, iso, jwt_decode, jwt_encode, now, parse_iso, reference_number
from .xades_auth import XadesAuthMixin

_logger = logging.getLogger(__name__)

ALL_PERMISSIONS = ("InvoiceRead", "InvoiceWrite", "CredentialsRead", "CredentialsManage", "SubunitManage",
                   "Introspection")
TOKEN_PERMISSIONS = ("InvoiceRead", "InvoiceWrite", "CredentialsRead", "CredentialsManage", "SubunitManage",
                     "EnforcementOperations", "Introspection")
WRITE_PERMS = ("InvoiceWrite", "PefInvoiceWrite", "EnforcementOperations")
STATUS_PERMS = ("InvoiceWrite", "Introspection", "PefInvoiceWrite", "EnforcementOperations")
READ_PERMS = ("InvoiceRead",)
REF_RE = re.compile(r"^[0-9A-Za-z-]{36}$")

AUTH_STATUS = {
    100: "Uwierzytelnianie w toku",
    200: "Uwierzytelnianie zakończone sukcesem",
    415: "Uwierzytelnianie zakończone niepowodzeniem",
    425: "Uwierzytelnienie unieważnione",
    450: "Uwierzytelnianie zakończone niepowodzeniem z powodu błędnego tokenu",
    460: "Uwierzytelnianie zakończone niepowodzeniem z powodu błędu certyfikatu",
    500: "Nieznany błąd",
}


@dataclasses.dataclass
class SandboxConfig:
    """Tunable behaviour; every field can be changed at run time with ``POST /_sandbox/config``."""

    access_token_ttl: float = 900.0          # seconds ("kilkanaście minut")
    refresh_token_ttl: float = 7 * 86400.0
    auth_operation_ttl: float = 3600.0       # authenticationToken validity
    challenge_ttl: float = 600.0
    auth_delay: float = 0.3                  # time spent in status 100 by GET /auth/{ref}
    token_activation_delay: float = 0.3      # KSeF token Pending -> Active, Revoking -> Revoked
    invoice_delay: float = 0.2               # online invoice in 100/150 before its final status
    session_close_delay: float = 0.2         # session in 170 (online) before 200/440/445
    export_delay: float = 0.2                # export in 100 at least this long
    storage_delay: float = 0.05              # permanentStorageDate - acquisitionDate
    hwm_lag: float = 1.0                     # permanentStorageHwmDate = now - hwm_lag
    session_ttl: float = 12 * 3600.0
    upo_url_ttl: float = 3 * 86400.0
    export_url_ttl: float = 3600.0
    export_part_size: int = 50 * 1024 * 1024
    export_max_invoices: int = 10000
    query_max_records: int = 10000
    max_concurrent_exports: int = 10
    batch_part_seconds: float = 20 * 60.0    # upload window per part
    prd_like: bool = False                   # PRD rules: NIP checksums, no FA(2)
    allow_attachments: bool = False          # True = every NIP may send Zalacznik (else /testdata/attachment)
    self_billing_without_grant: bool = False  # True = no SelfInvoicing grant needed
    sign_upo: bool = False                   # XAdES-sign UPOs with the sandbox seal (then not XSD-valid)
    validate_xsd: bool = True
    max_body_bytes: int = 16 * 1024 * 1024
    max_part_bytes: int = 100 * 1024 * 1024 + 16

    def update(self, values):
        for key, value in values.items():
            field = next((f for f in dataclasses.fields(self) if f.name == key), None)
            if field is None:
                raise ValueError("unknown config key %r" % key)
            kind = type(getattr(self, key))
            if kind is bool and not isinstance(value, bool):
                raise ValueError("%s must be true or false" % key)
            setattr(self, key, kind(value))


class Route:
    def __init__(self, method, pattern, handler, group, auth, perms=None):  # noqa: PLR0917
        self.method = method
        self.regex = re.compile("^%s$" % re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern))
        self.handler = handler
        self.group = group          # rate-limit group, "public" or None (not limited)
        self.auth = auth            # None | "operation" | "refresh" | "access" | "access_or_refresh"
        self.perms = perms          # any-of permissions for access tokens


class Sandbox(AdminMixin, XadesAuthMixin, InvoicingMixin, ReceivingMixin):
    """The KSeF emulator, independent of the HTTP server (see :mod:`ksef.sandbox.server`)."""

    def __init__(self, data_dir, config=None, rate_limits="off"):
        self.data_dir = os.path.abspath(os.path.expanduser(data_dir))
        os.makedirs(self.data_dir, exist_ok=True)
        self.config = config or SandboxConfig()
        self.store = Store(os.path.join(self.data_dir, "sandbox.sqlite3"))
        self.keys = SandboxKeys(os.path.join(self.data_dir, "keys"))
        secret = self.store.kv_get("secret")
        if not secret:
            secret = os.urandom(32).hex()
            self.store.kv_set("secret", secret)
        self.secret = bytes.fromhex(secret)
        self.limiter = ratelimit.RateLimiter(rate_limits)
        self.initial_rate_limits = rate_limits
        self.initial_config = dataclasses.replace(self.config)
        self.faults = faults_mod.FaultInjector()
        self.status = {"status": "AVAILABLE", "messages": []}
        self.status_api_mode = None
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ksef-sandbox")
        self._jobs = set()
        self._jobs_lock = threading.Lock()
        self.routes = self._build_routes()
        self.resume_jobs()

    def close(self):
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    # -- background jobs ----------------------------------------------------------------
    def submit(self, key, func, *args):
        with self._jobs_lock:
            if key in self._jobs:
                return
            self._jobs.add(key)

        def run():
            try:
                func(*args)
            except Exception:
                _logger.exception("sandbox background job %s failed", key)
            finally:
                with self._jobs_lock:
                    self._jobs.discard(key)

        self.executor.submit(run)

    def busy(self):
        with self._jobs_lock:
            return bool(self._jobs)

    # -- routing ------------------------------------------------------------------------
    def _build_routes(self):
        R = Route
        return [
            R("GET", "/security/public-key-certificates", self.h_public_keys, "public", None),
            R("POST", "/auth/challenge", self.h_challenge, "public", None),
            R("POST", "/auth/ksef-token", self.h_auth_ksef_token, "public", None),
            R("POST", "/auth/xades-signature", self.h_auth_xades, "public", None),
            R("GET", "/auth/sessions", self.h_auth_sessions, "other", "access"),
            R("DELETE", "/auth/sessions/current", self.h_auth_revoke_current, "other", "access_or_refresh"),
            R("DELETE", "/auth/sessions/{ref}", self.h_auth_revoke, "other", "access"),
            R("POST", "/auth/token/redeem", self.h_redeem, "public", "operation"),
            R("POST", "/auth/token/refresh", self.h_refresh, "public", "refresh"),
            R("GET", "/auth/{ref}", self.h_auth_status, "public", "operation"),
            R("POST", "/tokens", self.h_token_create, "other", "access"),
            R("GET", "/tokens", self.h_token_list, "other", "access"),
            R("GET", "/tokens/{ref}", self.h_token_get, "other", "access"),
            R("DELETE", "/tokens/{ref}", self.h_token_revoke, "other", "access"),
            R("POST", "/sessions/online", self.h_online_open, "onlineSession", "access", WRITE_PERMS),
            R("POST", "/sessions/online/{ref}/invoices", self.h_online_send, "invoiceSend", "access", WRITE_PERMS),
            R("POST", "/sessions/online/{ref}/close", self.h_online_close, "onlineSession", "access", WRITE_PERMS),
            R("POST", "/sessions/batch", self.h_batch_open, "batchSession", "access",
              ("InvoiceWrite", "EnforcementOperations")),
            R("POST", "/sessions/batch/{ref}/close", self.h_batch_close, "batchSession", "access",
              ("InvoiceWrite", "EnforcementOperations")),
            R("GET", "/sessions", self.h_sessions_list, "sessionList", "access",
              ("InvoiceWrite", "Introspection", "EnforcementOperations")),
            R("GET", "/sessions/{ref}", self.h_session_status, "sessionMisc", "access", STATUS_PERMS),
            R("GET", "/sessions/{ref}/invoices", self.h_session_invoices, "sessionInvoiceList", "access",
              STATUS_PERMS),
            R("GET", "/sessions/{ref}/invoices/failed", self.h_session_invoices_failed, "sessionInvoiceList",
              "access", STATUS_PERMS),
            R("GET", "/sessions/{ref}/invoices/ksef/{ksef}/upo", self.h_invoice_upo_by_ksef, "sessionMisc",
              "access", STATUS_PERMS),
            R("GET", "/sessions/{ref}/invoices/{inv}/upo", self.h_invoice_upo, "sessionMisc", "access",
              STATUS_PERMS),
            R("GET", "/sessions/{ref}/invoices/{inv}", self.h_invoice_status, "invoiceStatus", "access",
              STATUS_PERMS),
            R("GET", "/sessions/{ref}/upo/{upo}", self.h_session_upo, "sessionMisc", "access", STATUS_PERMS),
            R("GET", "/invoices/ksef/{ksef}", self.h_invoice_download, "invoiceDownload", "access", READ_PERMS),
            R("POST", "/invoices/query/metadata", self.h_query_metadata, "invoiceMetadata", "access", READ_PERMS),
            R("POST", "/invoices/exports", self.h_export_create, "invoiceExport", "access", READ_PERMS),
            R("GET", "/invoices/exports/{ref}", self.h_export_status, "invoiceExportStatus", "access", READ_PERMS),
            R("POST", "/permissions/query/personal/grants", self.h_personal_permissions, "other", "access"),
            R("GET", "/rate-limits", self.h_rate_limits, "other", "access"),
            R("GET", "/limits/context", self.h_limits_context, "other", "access"),
            R("GET", "/limits/subject", self.h_limits_subject, "other", "access"),
            R("POST", "/testdata/permissions", self.h_testdata_permissions, "public", None),
            R("POST", "/testdata/permissions/revoke", self.h_testdata_permissions_revoke, "public", None),
            R("POST", "/testdata/attachment", self.h_testdata_attachment, "public", None),
            R("POST", "/testdata/attachment/revoke", self.h_testdata_attachment_revoke, "public", None),
            R("POST", "/testdata/subject", self.h_testdata_noop, "public", None),
            R("POST", "/testdata/subject/remove", self.h_testdata_noop, "public", None),
            R("POST", "/testdata/person", self.h_testdata_noop, "public", None),
            R("POST", "/testdata/person/remove", self.h_testdata_noop, "public", None),
            R("POST", "/testdata/rate-limits", self.h_testdata_rate_limits, "other", "access"),
            R("DELETE", "/testdata/rate-limits", self.h_testdata_rate_limits_reset, "other", "access"),
            R("POST", "/testdata/rate-limits/production", self.h_testdata_rate_limits_production, "other",
              "access"),
        ]

    def dispatch(self, req, path):
        """Handle an API request (path relative to ``/v2``); returns a :class:`Response`."""
        method_seen = False
        for route in self.routes:
            match = route.regex.match(path)
            if not match:
                continue
            method_seen = True
            if route.method != req.method:
                continue
            ctx = None
            if route.auth:
                ctx = self.authenticate(req, route)
            if route.group:
                key = ctx["ctx"]["value"] if ctx and route.auth in ("access", "access_or_refresh") else "-"
                group = route.group if route.auth in ("access", "access_or_refresh") else "public"
                try:
                    self.limiter.check(group, (key, req.client_ip))
                except ratelimit.RateLimited as exc:
                    return too_many_requests(req, exc.retry_after, exc.message)
            return route.handler(req, ctx, **match.groupdict())
        if method_seen:
            raise Fail(405, detail="Metoda %s nie jest obsługiwana dla %s." % (req.method, path))
        raise Fail(404, detail="Nie znaleziono zasobu %s." % path)

    # -- authentication of requests -----------------------------------------------------
    def authenticate(self, req, route):
        header = req.header("authorization") or ""
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise Fail(401, detail="Wymagane jest uwierzytelnienie.")
        claims = jwt_decode(header[7:].strip(), self.secret)
        wanted = {"operation": ("OperationToken",), "refresh": ("RefreshToken",),
                  "access": ("ContextToken",), "access_or_refresh": ("ContextToken", "RefreshToken")}[route.auth]
        if claims is None or claims.get("typ") not in wanted:
            raise Fail(401, detail="Nieprawidłowy token.")
        if claims.get("exp", 0) < time.time():
            raise Fail(401, detail="Token wygasł.")
        if claims["typ"] == "ContextToken":
            allowed = claims.get("ips")
            if allowed and not _ip_allowed(req.client_ip, allowed):
                raise Fail(403, detail="Żądanie pochodzi z adresu IP innego niż wskazany podczas uwierzytelnienia.",
                           reason_code="ip-not-allowed", security={"clientIp": req.client_ip})
            if route.perms and not set(route.perms) & set(claims.get("perms") or ()):
                raise Fail(403, detail="Brak wymaganych uprawnień do wykonania operacji w bieżącym kontekście.",
                           reason_code="missing-permissions",
                           security={"requiredAnyOfPermissions": list(route.perms),
                                     "presentPermissions": list(claims.get("perms") or ())})
        return claims

    # -- public keys --------------------------------------------------------------------
    def h_public_keys(self, req, ctx):
        return Response.json(self.keys.public_certificates(iso))

    def key_for(self, usage, public_key_id):
        if public_key_id is not None and not isinstance(public_key_id, str):
            raise Fail(400, 21405, details=["publicKeyId musi być tekstem."])
        pair = self.keys.find(usage, public_key_id)
        if pair is None:
            raise Fail(400, 21470, details=["Klucz o identyfikatorze %s nie jest wspierany." % public_key_id])
        return pair

    # -- challenge / auth operations ----------------------------------------------------
    def h_challenge(self, req, ctx):
        moment = now()
        challenge = reference_number("CR", moment)
        ms = int(moment.timestamp() * 1000)
        doc = {"timestampMs": ms, "timestamp": iso(moment), "used": False, "clientIp": req.client_ip}
        self.store.put_doc("challenges", challenge, doc)
        return Response.json({"challenge": challenge, "timestamp": iso(moment), "timestampMs": ms,
                              "clientIp": req.client_ip})

    def use_challenge(self, challenge):
        """Consume a challenge; returns its document or raises 400 21111."""
        if not isinstance(challenge, str) or len(challenge) != 36:
            raise Fail(400, 21405, details=["challenge musi mieć 36 znaków."])
        with self.store.tx():
            doc = self.store.doc("challenges", challenge)
            if doc is None or doc["used"]:
                raise Fail(400, 21111, details=["Challenge %s jest nieznany lub został już użyty." % challenge])
            age = time.time() - doc["timestampMs"] / 1000.0
            if age > self.config.challenge_ttl:
                raise Fail(400, 21111, details=["Challenge %s wygasł." % challenge])
            doc["used"] = True
            self.store.put_doc("challenges", challenge, doc)
        return doc

    def start_auth_operation(self, *, context, method, method_info, subject, permissions, failure=None,
                             token_ref=None, auth_doc_hash=None, allowed_ips=None, client_ip=None):
        moment = now()
        ref = reference_number("AU", moment)
        status = {"code": 200, "description": AUTH_STATUS[200]}
        if failure:
            code, detail = failure
            status = {"code": code, "description": AUTH_STATUS.get(code, AUTH_STATUS[500]), "details": [detail]}
        doc = {
            "referenceNumber": ref, "context": context, "method": method, "methodInfo": method_info,
            "subject": subject, "permissions": sorted(permissions or ()), "startDate": iso(moment),
            "readyAt": time.time() + self.config.auth_delay, "status": status, "redeemed": False,
            "refreshValidUntil": None, "lastRefresh": None, "revoked": False, "tokenRef": token_ref,
            "authDocHash": auth_doc_hash, "allowedIps": allowed_ips, "clientIp": client_ip,
        }
        with self.store.tx() as c:
            c.execute("INSERT INTO auth_ops (ref, context, created, doc) VALUES (?, ?, ?, ?)",
                      (ref, "%s:%s" % (context["type"], context["value"]), doc["startDate"], json.dumps(doc)))
        exp = time.time() + self.config.auth_operation_ttl
        token = jwt_encode({"typ": "OperationToken", "ref": ref, "exp": int(exp), "iat": int(time.time()),
                            "iss": "ksef-sandbox", "aud": "ksef-sandbox"}, self.secret)
        return Response.json({"referenceNumber": ref, "authenticationToken": {
            "token": token, "validUntil": iso(datetime.datetime.fromtimestamp(exp, datetime.timezone.utc))}},
            status=202)

    def h_auth_ksef_token(self, req, ctx):
        body = req.json()
        for name in ("challenge", "contextIdentifier", "encryptedToken"):
            if body.get(name) in (None, ""):
                raise Fail(400, 21405, details=["Pole '%s' jest wymagane." % name])
        context = _context_identifier(body["contextIdentifier"])
        pair = self.key_for("KsefTokenEncryption", body.get("publicKeyId"))
        try:
            encrypted = crypto.b64decode(body["encryptedToken"])
        except (ValueError, TypeError):
            raise Fail(400, 21405, details=["encryptedToken nie jest poprawnym Base64."]) from None
        allowed_ips = _allowed_ips(body.get("authorizationPolicy"))
        challenge_doc = self.use_challenge(body["challenge"])
        failure = None
        token_doc = None
        try:
            plain = crypto.rsa_oaep_decrypt(pair.key, encrypted).decode("utf-8")
            token, sep, stamp = plain.rpartition("|")
            if not sep:
                raise ValueError("no separator")
        except (ValueError, UnicodeDecodeError):
            failure = (450, "Nieprawidłowy token.")
            token = stamp = None
        if failure is None and stamp != str(challenge_doc["timestampMs"]):
            failure = (450, "Nieprawidłowy czas tokena.")
        if failure is None:
            token_doc = self.find_token(token)
            if token_doc is None:
                failure = (450, "Nieprawidłowy token.")
            else:
                status = token_doc["status"]
                if status in ("Revoked", "Revoking"):
                    failure = (450, "Token unieważniony.")
                elif status != "Active":
                    failure = (450, "Token nieaktywny.")
                elif token_doc["contextIdentifier"] != context:
                    failure = (450, "Nieprawidłowy token.")
        if token_doc is not None and failure is None:
            self._touch_token(token_doc["referenceNumber"])
        return self.start_auth_operation(
            context=context, method="Token",
            method_info={"category": "Token", "code": "token.ksef", "displayName": "Token KSeF"},
            subject=token_doc["authorIdentifier"] if token_doc else None,
            permissions=token_doc["requestedPermissions"] if token_doc and not failure else (),
            failure=failure, token_ref=token_doc["referenceNumber"] if token_doc else None,
            allowed_ips=allowed_ips, client_ip=req.client_ip)

    def _auth_op(self, ref):
        doc = self.store.doc("auth_ops", ref)
        if doc is None:
            raise Fail(400, 21304, details=[
                "Operacja uwierzytelniania o numerze referencyjnym %s nie została znaleziona." % ref])
        started = parse_iso(doc["startDate"])
        if now() - started > datetime.timedelta(days=7):
            raise Fail(410, detail="Operacja wygasła i nie jest już dostępna.")
        return doc

    def _auth_status(self, doc):
        if time.time() < doc["readyAt"]:
            return {"code": 100, "description": AUTH_STATUS[100]}
        if doc.get("revoked"):
            return {"code": 425, "description": AUTH_STATUS[425], "details": [
                "Uwierzytelnienie i powiązane refresh tokeny zostały unieważnione przez użytkownika."]}
        return doc["status"]

    def _auth_view(self, doc, current_ref=None, listing=False):
        out = {"startDate": doc["startDate"], "authenticationMethod": doc["method"],
               "authenticationMethodInfo": doc["methodInfo"], "status": self._auth_status(doc)}
        if listing:
            out = {"referenceNumber": doc["referenceNumber"], "isCurrent": doc["referenceNumber"] == current_ref,
                   **out}
        if doc["redeemed"]:
            out["isTokenRedeemed"] = True
            out["refreshTokenValidUntil"] = doc["refreshValidUntil"]
            if doc.get("lastRefresh"):
                out["lastTokenRefreshDate"] = doc["lastRefresh"]
        elif not listing:
            out["isTokenRedeemed"] = False
        return out

    def h_auth_status(self, req, ctx, ref):
        doc = self._auth_op(ref)
        if ctx.get("ref") != ref:
            raise Fail(401, detail="Token nie dotyczy operacji uwierzytelniania %s." % ref)
        return Response.json(self._auth_view(doc))

    def h_redeem(self, req, ctx):
        ref = ctx["ref"]
        with self.store.tx():
            doc = self._auth_op(ref)
            status = self._auth_status(doc)
            if doc["redeemed"]:
                raise Fail(400, 21301, details=[
                    "Tokeny dla operacji uwierzytelniania %s zostały już pobrane." % ref])
            if status["code"] != 200:
                raise Fail(400, 21301, details=[
                    "Status uwierzytelniania (%s) nie pozwala na pobranie tokenów." % status["code"]])
            self._check_token_alive(doc)
            refresh_exp = time.time() + self.config.refresh_token_ttl
            doc["redeemed"] = True
            doc["refreshValidUntil"] = iso(_ts(refresh_exp))
            self.store.put_doc("auth_ops", ref, doc, context="%s:%s" % (doc["context"]["type"],
                                                                     doc["context"]["value"]),
                               created=doc["startDate"])
        access = self._access_token(doc)
        refresh = jwt_encode({"typ": "RefreshToken", "ref": ref, "exp": int(refresh_exp), "iat": int(time.time()),
                              "iss": "ksef-sandbox", "aud": "ksef-sandbox"}, self.secret)
        return Response.json({"accessToken": access,
                              "refreshToken": {"token": refresh, "validUntil": doc["refreshValidUntil"]}})

    def _check_token_alive(self, doc):
        if doc.get("tokenRef"):
            token = self.token_doc(doc["tokenRef"])
            if token is None or token["status"] in ("Revoking", "Revoked"):
                raise Fail(400, 21301, details=["Token KSeF został unieważniony."])

    def _access_token(self, doc):
        exp = time.time() + self.config.access_token_ttl
        claims = {"typ": "ContextToken", "ref": doc["referenceNumber"], "ctx": doc["context"],
                  "perms": doc["permissions"], "sub": doc["subject"], "method": doc["method"],
                  "category": doc["methodInfo"]["category"], "tok": doc.get("tokenRef"),
                  "exp": int(exp), "iat": int(time.time()), "iss": "ksef-sandbox", "aud": "ksef-sandbox"}
        if doc.get("allowedIps"):
            claims["ips"] = doc["allowedIps"]
        return {"token": jwt_encode(claims, self.secret), "validUntil": iso(_ts(exp))}

    def h_refresh(self, req, ctx):
        ref = ctx["ref"]
        with self.store.tx():
            doc = self._auth_op(ref)
            if doc.get("revoked"):
                raise Fail(400, 21301, details=[
                    "Status uwierzytelniania (425) nie pozwala na odświeżenie tokenu dostępowego."])
            self._check_token_alive(doc)
            doc["lastRefresh"] = iso(now())
            self.store.put_doc("auth_ops", ref, doc, context="%s:%s" % (doc["context"]["type"],
                                                                     doc["context"]["value"]),
                               created=doc["startDate"])
        return Response.json({"accessToken": self._access_token(doc)})

    def h_auth_sessions(self, req, ctx):
        page_size = _int_arg(req, "pageSize", 10, 10, 100)
        offset = _continuation(req)
        rows = self.store.q("SELECT doc FROM auth_ops WHERE context=? ORDER BY created DESC",
                            ("%s:%s" % (ctx["ctx"]["type"], ctx["ctx"]["value"]),))
        items = []
        for row in rows:
            doc = json.loads(row[0])
            if not doc["redeemed"] or doc.get("revoked"):
                continue
            if parse_iso(doc["refreshValidUntil"]) < now():
                continue
            items.append(self._auth_view(doc, ctx["ref"], listing=True))
        page = items[offset:offset + page_size]
        out = {"items": page}
        if offset + page_size < len(items):
            out["continuationToken"] = _make_continuation(offset + page_size)
        return Response.json(out)

    def _revoke_auth(self, ref, context):
        with self.store.tx():
            doc = self.store.doc("auth_ops", ref)
            if doc is None or doc["context"] != context:
                raise Fail(400, 21405, details=["Sesja uwierzytelnienia %s nie istnieje." % ref])
            doc["revoked"] = True
            self.store.put_doc("auth_ops", ref, doc, context="%s:%s" % (context["type"], context["value"]),
                               created=doc["startDate"])

    def h_auth_revoke_current(self, req, ctx):
        doc = self._auth_op(ctx["ref"])
        self._revoke_auth(ctx["ref"], doc["context"])
        return Response.empty()

    def h_auth_revoke(self, req, ctx, ref):
        self._revoke_auth(ref, ctx["ctx"])
        return Response.empty()

    # -- KSeF tokens --------------------------------------------------------------------
    @staticmethod
    def _token_hash(token):
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def issue_token(self, context, author, permissions, description, active=False):
        moment = now()
        ref = reference_number("EC", moment)
        token = "%s|%s-%s|%s" % (ref, "nip" if context["type"] == "Nip" else "internalId", context["value"],
                                 os.urandom(32).hex())
        doc = {"referenceNumber": ref, "authorIdentifier": author, "contextIdentifier": context,
               "description": description, "requestedPermissions": list(permissions),
               "dateCreated": iso(moment), "lastUseDate": None,
               "status": "Active" if active else "Pending",
               "switchAt": None if active else time.time() + self.config.token_activation_delay,
               "statusDetails": []}
        with self.store.tx() as c:
            c.execute("INSERT INTO tokens (ref, token_hash, context, created, doc) VALUES (?, ?, ?, ?, ?)",
                      (ref, self._token_hash(token), "%s:%s" % (context["type"], context["value"]), doc["dateCreated"],
                       json.dumps(doc)))
        return ref, token

    @staticmethod
    def _token_settle(doc):
        if doc.get("switchAt") and time.time() >= doc["switchAt"]:
            doc["status"] = {"Pending": "Active", "Revoking": "Revoked"}.get(doc["status"], doc["status"])
            doc["switchAt"] = None
        return doc

    def token_doc(self, ref):
        doc = self.store.doc("tokens", ref)
        return self._token_settle(doc) if doc else None

    def find_token(self, token):
        row = self.store.q1("SELECT doc FROM tokens WHERE token_hash=?", (self._token_hash(token),))
        return self._token_settle(json.loads(row[0])) if row else None

    def _touch_token(self, ref):
        def touch(doc):
            doc["lastUseDate"] = iso(now())
            return doc
        self.store.update_doc("tokens", ref, touch)

    @staticmethod
    def _token_view(doc):
        out = {k: doc[k] for k in ("referenceNumber", "authorIdentifier", "contextIdentifier", "description",
                                   "requestedPermissions", "dateCreated", "status", "statusDetails")}
        if doc.get("lastUseDate"):
            out["lastUseDate"] = doc["lastUseDate"]
        return out

    def h_token_create(self, req, ctx):
        body = req.json()
        if ctx.get("category") != "XadesSignature":
            raise Fail(403, detail="Ta operacja nie jest dostępna dla użytej metody uwierzytelnienia.",
                       reason_code="auth-method-not-allowed",
                       security={"authenticationMethodCategory": ctx.get("category")})
        if ctx["ctx"]["type"] not in ("Nip", "InternalId"):
            raise Fail(400, 26002, details=["Aktualny typ kontekstu: %s; dozwolone: Nip, InternalId."
                                            % ctx["ctx"]["type"]])
        perms = body.get("permissions")
        description = body.get("description")
        if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
            raise Fail(400, 21405, details=["Pole 'permissions' jest wymagane (lista)."])
        unknown = [p for p in perms if p not in TOKEN_PERMISSIONS]
        if unknown:
            raise Fail(400, 21405, details=["Nieznane uprawnienia: %s." % ", ".join(unknown)])
        if not isinstance(description, str) or not 5 <= len(description) <= 256:
            raise Fail(400, 21405, details=["Pole 'description' musi mieć od 5 do 256 znaków."])
        missing = [p for p in perms if p not in ctx.get("perms", ())]
        if missing:
            raise Fail(400, 26001, details=["Brakujące uprawnienia: %s." % ", ".join(missing)])
        ref, token = self.issue_token(ctx["ctx"], ctx["sub"], list(dict.fromkeys(perms)), description)
        return Response.json({"referenceNumber": ref, "token": token}, status=202)

    def _visible_tokens(self, ctx):
        rows = self.store.q("SELECT doc FROM tokens WHERE context=? ORDER BY created DESC",
                            ("%s:%s" % (ctx["ctx"]["type"], ctx["ctx"]["value"]),))
        docs = [self._token_settle(json.loads(r[0])) for r in rows]
        perms = set(ctx.get("perms") or ())
        if perms & {"CredentialsManage", "CredentialsRead"}:
            return docs
        if ctx.get("tok"):
            return [d for d in docs if d["referenceNumber"] == ctx["tok"]]
        return [d for d in docs if d["authorIdentifier"] == ctx.get("sub")]

    def h_token_list(self, req, ctx):
        page_size = _int_arg(req, "pageSize", 10, 10, 100)
        offset = _continuation(req)
        statuses = req.args("status")
        bad = [s for s in statuses if s not in ("Pending", "Active", "Revoking", "Revoked", "Failed")]
        if bad:
            raise Fail(400, 21405, details=["Nieprawidłowy status: %s." % ", ".join(bad)])
        description = req.arg("description")
        author = req.arg("authorIdentifier")
        author_type = req.arg("authorIdentifierType")
        for name, value in (("description", description), ("authorIdentifier", author)):
            if value is not None and len(value) < 3:
                raise Fail(400, 21405, details=["Parametr '%s' musi mieć co najmniej 3 znaki." % name])
        docs = self._visible_tokens(ctx)
        if statuses:
            docs = [d for d in docs if d["status"] in statuses]
        if description:
            docs = [d for d in docs if description.lower() in d["description"].lower()]
        if author:
            docs = [d for d in docs if author.lower() in (d["authorIdentifier"] or {}).get("value", "").lower()]
        if author_type:
            docs = [d for d in docs if (d["authorIdentifier"] or {}).get("type") == author_type]
        page = docs[offset:offset + page_size]
        out = {"tokens": [self._token_view(d) for d in page]}
        if offset + page_size < len(docs):
            out["continuationToken"] = _make_continuation(offset + page_size)
        return Response.json(out)

    def _token_in_context(self, ctx, ref):
        doc = self.token_doc(ref)
        if doc is None or doc["contextIdentifier"] != ctx["ctx"]:
            raise Fail(400, 21405, details=["Token o numerze referencyjnym %s nie istnieje." % ref])
        return doc

    def h_token_get(self, req, ctx, ref):
        return Response.json(self._token_view(self._token_in_context(ctx, ref)))

    def h_token_revoke(self, req, ctx, ref):
        doc = self._token_in_context(ctx, ref)
        perms = set(ctx.get("perms") or ())
        if "CredentialsManage" not in perms:
            own = (ctx.get("tok") == ref) if ctx.get("tok") else doc["authorIdentifier"] == ctx.get("sub")
            if not own:
                raise Fail(403, detail="Brak dostępu do wskazanego zasobu.",
                           reason_code="insufficient-resource-access", security=None)

        def revoke(d):
            d = self._token_settle(d)
            if d["status"] not in ("Revoking", "Revoked"):
                d["status"] = "Revoking"
                d["switchAt"] = time.time() + self.config.token_activation_delay
            return d
        self.store.update_doc("tokens", ref, revoke)
        return Response.empty()

    # -- limits -------------------------------------------------------------------------
    def h_rate_limits(self, req, ctx):
        return Response.json(self.limiter.effective())

    def h_limits_context(self, req, ctx):
        limits = {"maxInvoiceSizeInMB": 1, "maxInvoiceWithAttachmentSizeInMB": 3, "maxInvoices": 10000}
        return Response.json({"onlineSession": dict(limits), "batchSession": dict(limits)})

    def h_limits_subject(self, req, ctx):
        sub = ctx.get("sub") or {}
        if sub.get("type") == "Nip":
            return Response.json({"enrollment": {"maxEnrollments": 300}, "certificate": {"maxCertificates": 100}})
        return Response.json({"enrollment": {"maxEnrollments": 12}, "certificate": {"maxCertificates": 6}})

    # -- permissions of a subject in a context -------------------------------------------
    def permissions_of(self, subject, context):
        """Owner (NIP of the credential = context NIP) has all; others what /testdata/permissions granted."""
        if subject and subject.get("type") == "Nip":
            ctx_nip = context["value"].split("-")[0] if context["type"] in ("Nip", "InternalId") else None
            if ctx_nip == subject["value"]:
                return list(ALL_PERMISSIONS)
        if not subject:
            return []
        rows = self.store.q("SELECT permission FROM grants WHERE context=? AND subject=?",
                            (context["value"], subject["value"]))
        return sorted({r[0] for r in rows})


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _ts(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)


def _context_identifier(value):
    if not isinstance(value, dict) or value.get("type") not in ("Nip", "InternalId", "NipVatUe", "PeppolId") \
            or not isinstance(value.get("value"), str):
        raise Fail(400, 21405, details=["contextIdentifier musi zawierać type (Nip, InternalId, NipVatUe, "
                                        "PeppolId) i value."])
    patterns = {"Nip": r"[1-9]((\d[1-9])|([1-9]\d))\d{7}", "InternalId": r"[1-9]((\d[1-9])|([1-9]\d))\d{7}-\d{5}",
                "NipVatUe": r"[1-9]((\d[1-9])|([1-9]\d))\d{7}-[A-Z]{2}[0-9A-Z+*]{2,12}", "PeppolId": r"P[A-Z]{2}\d{6}"}
    if not re.fullmatch(patterns[value["type"]], value["value"]):
        raise Fail(400, 21405, details=["Nieprawidłowa wartość identyfikatora kontekstu %s." % value["value"]])
    return {"type": value["type"], "value": value["value"]}


def _allowed_ips(policy):
    if not policy:
        return None
    if not isinstance(policy, dict):
        raise Fail(400, 21405, details=["authorizationPolicy musi być obiektem."])
    ips = policy.get("allowedIps")
    if not ips:
        return None
    out = {}
    for key in ("ip4Addresses", "ip4Ranges", "ip4Masks"):
        values = ips.get(key) or []
        if not isinstance(values, list) or len(values) > 10:
            raise Fail(400, 21405, details=["%s: najwyżej 10 wartości." % key])
        out[key] = [str(v) for v in values]
    return out


def _ip_allowed(ip, allowed):
    import ipaddress
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if ip in allowed.get("ip4Addresses", []):
        return True
    for rng in allowed.get("ip4Ranges", []):
        lo, _, hi = rng.partition("-")
        try:
            if ipaddress.ip_address(lo.strip()) <= addr <= ipaddress.ip_address(hi.strip()):
                return True
        except ValueError:
            continue
    for mask in allowed.get("ip4Masks", []):
        try:
            if addr in ipaddress.ip_network(mask, strict=False):
                return True
        except ValueError:
            continue
    return False


def _int_arg(req, name, default, lo, hi):
    raw = req.arg(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Fail(400, 21405, details=["Parametr '%s' musi być liczbą całkowitą." % name]) from None
    if not lo <= value <= hi:
        raise Fail(400, 21405, details=["Parametr '%s' musi mieścić się w zakresie %d-%d." % (name, lo, hi)])
    return value


def _make_continuation(offset):
    return b64(json.dumps({"o": offset}).encode())


def _continuation(req):
    token = req.header("x-continuation-token")
    if not token:
        return 0
    try:
        value = json.loads(crypto.b64decode(token))
        offset = int(value["o"])
        if offset < 0:
            raise ValueError
        return offset
    except (ValueError, TypeError, KeyError):
        raise Fail(400, 21418) from None


__all__ = ["Sandbox", "SandboxConfig", "from_db", "is_valid_nip"]
