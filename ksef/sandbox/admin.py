"""Non-KSeF parts of the sandbox: admin API, pre-signed storage URLs, Latarnia status, /testdata, QR."""
import base64
import datetime
import html
import json
import logging
import time
import urllib.parse
import uuid

from .. import crypto
from .http import Fail, Response
from .util import iso, now, sign_blob

_logger = logging.getLogger(__name__)

STATUSES = ("AVAILABLE", "MAINTENANCE", "FAILURE", "TOTAL_FAILURE")


class AdminMixin:
    # -- pre-signed URLs ----------------------------------------------------------------
    def presign(self, req, path, expires):
        expires = int(expires)
        sig = sign_blob(self.secret, "%s|%d" % (path, expires))
        return "%s%s?%s" % (req.base_url, path, urllib.parse.urlencode({"se": expires, "sig": sig}))

    def check_presigned(self, req, path):
        try:
            expires = int(req.arg("se") or "")
        except ValueError:
            raise Fail(403, detail="Brak lub nieprawidłowy podpis adresu.", reason_code="insufficient-resource-access")
        if sign_blob(self.secret, "%s|%d" % (path, expires)) != (req.arg("sig") or ""):
            raise Fail(403, detail="Nieprawidłowy podpis adresu.", reason_code="insufficient-resource-access")
        if time.time() > expires:
            raise Fail(403, detail="Adres wygasł.", reason_code="insufficient-resource-access")

    def storage(self, req, path):
        """``/storage/...`` pre-signed URLs (no bearer token, not rate-limited)."""
        self.check_presigned(req, path)
        parts = path.strip("/").split("/")
        # storage/upo/{session}/invoice/{ksef} | storage/upo/{session}/page/{ref}
        if req.method == "GET" and len(parts) == 5 and parts[1] == "upo":
            session_ref, kind, ident = parts[2], parts[3], parts[4]
            if kind == "invoice":
                data, digest = self.invoice_upo(session_ref, ident)
            else:
                data, digest = self._blob("upo:sess:%s:%s" % (session_ref, ident))
            if data is None:
                raise Fail(404, detail="UPO nie jest jeszcze dostępne.")
            return Response(200, data, "application/xml", {"x-ms-meta-hash": digest})
        if req.method == "PUT" and len(parts) == 4 and parts[1] == "batch":
            return self.batch_part_upload(parts[2], int(parts[3]), req)
        if req.method == "GET" and len(parts) == 4 and parts[1] == "export":
            file_path = self.export_part_path(parts[2], int(parts[3]))
            if file_path is None:
                raise Fail(404, detail="Część paczki nie istnieje.")
            with open(file_path, "rb") as fh:
                data = fh.read()
            return Response(200, data, "application/octet-stream", {"x-ms-meta-hash": crypto.sha256_b64(data)})
        raise Fail(404, detail="Nie znaleziono zasobu.")

    # -- Latarnia -----------------------------------------------------------------------
    def set_status(self, status, message=None, api=None):
        if status not in STATUSES:
            raise ValueError("status must be one of %s" % ", ".join(STATUSES))
        if api not in (None, "503", "drop", "up"):
            raise ValueError("api must be '503', 'drop' or 'up'")
        previous = self.status["status"]
        moment = iso(now())
        history = self.store.kv_get("latarnia_messages", [])
        active = self.status.get("messages", [])
        if previous != "AVAILABLE":
            for msg in active:
                msg["end"] = moment
                if msg["category"] != "MAINTENANCE":
                    end = dict(msg, id=len(history) + 1, type="FAILURE_END", published=moment,
                               title="Zakończenie awarii", version=msg["version"] + 1)
                    history.append(end)
        messages = []
        if status != "AVAILABLE":
            category = status
            msg = {"id": len(history) + 1, "eventId": len(history) + 1, "category": category,
                   "type": "MAINTENANCE_ANNOUNCEMENT" if status == "MAINTENANCE" else "FAILURE_START",
                   "title": {"MAINTENANCE": "Prace serwisowe", "FAILURE": "Awaria systemu KSeF",
                             "TOTAL_FAILURE": "Awaria całkowita systemu KSeF"}[status],
                   "text": message or "Komunikat środowiska testowego (sandbox).", "start": moment,
                   "version": 1, "published": moment}
            messages.append(msg)
            history.append(dict(msg))
        self.store.kv_set("latarnia_messages", history)
        self.status = {"status": status, "messages": messages}
        self.status_api_mode = api

    def api_gate(self):
        """How the API answers while Latarnia reports a problem: None (normal), '503' or 'drop'."""
        status = self.status["status"]
        mode = self.status_api_mode
        if status == "AVAILABLE" or mode == "up":
            return None
        if mode:
            return mode
        return "drop" if status == "TOTAL_FAILURE" else "503"

    def latarnia(self, req, path):
        if req.method != "GET":
            raise Fail(405, detail="Dozwolona metoda GET.")
        if path in ("/status", "/api/status"):
            return Response.json(self.status)
        if path == "/messages":
            return Response.json(self.store.kv_get("latarnia_messages", []))
        raise Fail(404, detail="Nie znaleziono zasobu %s." % path)

    # -- /testdata (TEST environment helpers) ---------------------------------------------
    def h_testdata_permissions(self, req, ctx):
        body = req.json()
        try:
            context = body["contextIdentifier"]["value"]
            subject = body["authorizedIdentifier"]["value"]
            perms = [p["permissionType"] for p in body["permissions"]]
        except (KeyError, TypeError):
            raise Fail(400, 21405, details=["Wymagane: contextIdentifier, authorizedIdentifier, permissions."]) \
                from None
        self.grant(context, subject, perms)
        return Response(200, b"", None)

    def h_testdata_permissions_revoke(self, req, ctx):
        body = req.json()
        try:
            context = body["contextIdentifier"]["value"]
            subject = body["authorizedIdentifier"]["value"]
        except (KeyError, TypeError):
            raise Fail(400, 21405, details=["Wymagane: contextIdentifier, authorizedIdentifier."]) from None
        with self.store.tx() as c:
            c.execute("DELETE FROM grants WHERE context=? AND subject=? AND permission NOT IN "
                      "('SelfInvoicing', 'Attachment')", (context, subject))
        return Response(200, b"", None)

    def h_testdata_attachment(self, req, ctx):
        nip = req.json().get("nip")
        if not isinstance(nip, str) or len(nip) != 10:
            raise Fail(400, 21405, details=["Pole 'nip' jest wymagane."])
        self.grant(nip, nip, ["Attachment"])
        return Response(200, b"", None)

    def h_testdata_attachment_revoke(self, req, ctx):
        nip = req.json().get("nip")
        with self.store.tx() as c:
            c.execute("DELETE FROM grants WHERE context=? AND subject=? AND permission='Attachment'", (nip, nip))
        return Response(200, b"", None)

    def h_testdata_noop(self, req, ctx):
        req.json()
        return Response(200, b"", None)

    def h_testdata_rate_limits(self, req, ctx):
        body = req.json()
        limits = body.get("rateLimits")
        if not isinstance(limits, dict):
            raise Fail(400, 21405, details=["Pole 'rateLimits' jest wymagane."])
        try:
            self.limiter.set_mode(limits)
        except (ValueError, TypeError) as exc:
            raise Fail(400, 21405, details=[str(exc)]) from None
        return Response(200, b"", None)

    def h_testdata_rate_limits_reset(self, req, ctx):
        self.limiter.set_mode(self.initial_rate_limits)
        return Response(200, b"", None)

    def h_testdata_rate_limits_production(self, req, ctx):
        self.limiter.set_mode("production")
        return Response(200, b"", None)

    def grant(self, context, subject, permissions):
        with self.store.tx() as c:
            for perm in permissions:
                c.execute("INSERT OR IGNORE INTO grants (context, subject, permission, created) VALUES (?, ?, ?, ?)",
                          (context, subject, perm, iso(now())))

    def h_personal_permissions(self, req, ctx):
        """``POST /permissions/query/personal/grants``: permissions granted to the caller in this context."""
        from .app import _int_arg
        page_size = _int_arg(req, "pageSize", 10, 10, 100)
        page = _int_arg(req, "pageOffset", 0, 0, 2 ** 31 - 1)
        body = req.json() if req.body else {}
        types = body.get("permissionTypes") or None
        state = body.get("permissionState")
        if state not in (None, "Active", "Inactive"):
            raise Fail(400, 21405, details=["permissionState musi być Active albo Inactive."])
        wanted_ctx = (body.get("contextIdentifier") or {}).get("value")
        subject = (ctx.get("sub") or {}).get("value")
        rows = self.store.q("SELECT context, permission, created FROM grants WHERE subject=? AND context=? "
                            "AND permission NOT IN ('SelfInvoicing', 'Attachment') ORDER BY created DESC, permission",
                            (subject, ctx["ctx"]["value"]))
        items = []
        for context, permission, created in rows:
            if (types and permission not in types) or state == "Inactive":
                continue
            if wanted_ctx and wanted_ctx != context:
                continue
            ident = uuid.uuid5(uuid.NAMESPACE_URL, "ksef-sandbox:%s:%s:%s" % (context, subject, permission))
            items.append({"id": str(ident), "contextIdentifier": {"type": ctx["ctx"]["type"], "value": context},
                          "permissionScope": permission, "description": "Uprawnienie nadane w sandboxie",
                          "permissionState": "Active", "startDate": created or iso(now()), "canDelegate": False})
        start = page * page_size
        return Response.json({"permissions": items[start:start + page_size],
                              "hasMore": len(items) > start + page_size})

    # -- QR verification pages ----------------------------------------------------------------
    def qr(self, req, path):
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        as_json = (req.arg("format") or "").lower() == "json"
        if len(parts) == 4 and parts[0] == "invoice":
            _kind, nip, day, hash_url = parts
            try:
                digest = base64.b64encode(crypto.b64url_decode(hash_url)).decode("ascii")
                issue = datetime.datetime.strptime(day, "%d-%m-%Y").date().isoformat()
            except (ValueError, TypeError):
                raise Fail(404, detail="Nieprawidłowy adres weryfikacji.") from None
            row = self.store.q1("SELECT meta FROM invoices WHERE invoice_hash=? AND seller_nip=? AND issue_date=?",
                                (digest, nip, issue))
            result = {"found": row is not None, "sellerNip": nip, "issueDate": issue, "invoiceHash": digest}
            if row:
                meta = json.loads(row[0])
                result.update({"ksefNumber": meta["ksefNumber"], "invoiceNumber": meta["invoiceNumber"],
                               "invoicingMode": meta["invoicingMode"], "grossAmount": meta["grossAmount"],
                               "currency": meta["currency"]})
            if as_json:
                return Response.json(result)
            text = ("Faktura znajduje się w KSeF: numer %s" % html.escape(result["ksefNumber"])) if row else \
                "Nie znaleziono faktury w KSeF (sandbox)."
            return Response(200, "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Weryfikacja faktury"
                                 "</title></head><body><h1>%s</h1></body></html>" % text, "text/html; charset=utf-8")
        if len(parts) >= 7 and parts[0] == "certificate":
            result = {"verified": False, "contextType": parts[1], "contextValue": parts[2], "sellerNip": parts[3],
                      "certificateSerial": parts[4],
                      "reason": "KSeF certificates are not emulated by the sandbox; the signature cannot be checked."}
            if as_json:
                return Response.json(result)
            return Response(200, "<!DOCTYPE html><html><body><p>%s</p></body></html>" % html.escape(result["reason"]),
                            "text/html; charset=utf-8")
        raise Fail(404, detail="Nie znaleziono zasobu %s." % path)

    # -- admin API ----------------------------------------------------------------------
    def admin(self, req, path):
        body = {}
        if req.method in ("POST", "PUT") and req.body:
            try:
                body = json.loads(req.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return Response.json({"error": "body must be JSON"}, status=400)
        try:
            return self._admin(req, path, body)
        except (ValueError, TypeError, KeyError) as exc:
            return Response.json({"error": str(exc)}, status=400)

    def _admin(self, req, path, body):
        method = req.method
        if path in ("", "/") and method == "GET":
            return Response.json(self.info(req))
        if path == "/reset" and method == "POST":
            self.reset(data=bool(body.get("data")))
            return Response.json({"reset": True})
        if path == "/faults":
            if method == "GET":
                return Response.json({"faults": self.faults.list()})
            if method == "POST":
                faults = body.get("faults") if "faults" in body else [body]
                added = self.faults.add(faults, seed=body.get("seed"))
                return Response.json({"faults": added})
            if method == "DELETE":
                self.faults.clear()
                return Response.json({"faults": []})
        if path.startswith("/faults/") and method == "DELETE":
            self.faults.clear(int(path.rsplit("/", 1)[1]))
            return Response.json({"faults": self.faults.list()})
        if path == "/status":
            if method == "POST":
                self.set_status(body.get("status", "AVAILABLE"), body.get("message"), body.get("api"))
            return Response.json(dict(self.status, api=self.api_gate() or "up"))
        if path == "/rate-limits":
            if method == "POST":
                mode = body.get("mode", body) if isinstance(body, dict) else body
                self.limiter.set_mode(mode)
            return Response.json({"mode": self.limiter.mode_name, "limits": self.limiter.effective()})
        if path == "/config":
            if method == "POST":
                self.config.update(body)
            return Response.json(self.config_dict())
        if path == "/tokens" and method == "POST":
            context = body.get("context") or {"type": "Nip", "value": body["nip"]}
            perms = body.get("permissions") or ["InvoiceRead", "InvoiceWrite"]
            author = body.get("author") or {"type": "Nip", "value": context["value"][:10]}
            ref, token = self.issue_token(context, author, perms, body.get("description") or "sandbox token",
                                          active=True)
            return Response.json({"referenceNumber": ref, "token": token}, status=201)
        if path == "/grants" and method == "POST":
            self.grant(body["context"], body["subject"], body["permissions"])
            return Response.json({"granted": True})
        if path == "/seed" and method == "POST":
            from .seed import seed_invoices
            numbers = seed_invoices(self, body["buyerNip"], count=int(body.get("count", 10)),
                                    seed=body.get("seed"), from_dir=body.get("fromDir"),
                                    xml_documents=[base64.b64decode(x) for x in body.get("xml", [])],
                                    seller_nips=body.get("sellerNips"))
            return Response.json({"ksefNumbers": numbers}, status=201)
        if path == "/invoices" and method == "GET":
            return Response.json(self.stored_invoices(req))
        if path == "/wait" and method == "POST":
            deadline = time.time() + float(body.get("timeout", 60))
            while self.busy() and time.time() < deadline:
                time.sleep(0.02)
            return Response.json({"idle": not self.busy()})
        return Response.json({"error": "unknown admin endpoint %s %s" % (method, path)}, status=404)

    def config_dict(self):
        import dataclasses
        return dataclasses.asdict(self.config)

    def info(self, req):
        count = self.store.q1("SELECT COUNT(*) FROM invoices")[0]
        return {"api": req.base_url + "/v2", "latarnia": req.base_url + "/latarnia", "qr": req.base_url + "/qr",
                "dataDir": self.data_dir, "invoices": count, "status": self.status["status"],
                "rateLimits": self.limiter.mode_name, "faults": len(self.faults.list())}

    def reset(self, data=False):
        import dataclasses
        self.faults.clear()
        self.set_status("AVAILABLE")
        self.status_api_mode = None
        self.limiter.set_mode(self.initial_rate_limits)
        fresh = type(self.config)(**dataclasses.asdict(self.initial_config))
        self.config.__dict__.update(fresh.__dict__)
        if data:
            self.store.wipe()

    def stored_invoices(self, req):
        clauses, params = [], []
        for arg, column in (("sellerNip", "i.seller_nip"), ("sessionReferenceNumber", "i.session_ref"),
                            ("ksefNumber", "i.ksef_number"), ("invoiceNumber", "i.invoice_number")):
            if req.arg(arg):
                clauses.append("%s=?" % column)
                params.append(req.arg(arg))
        if req.arg("buyerNip"):
            clauses.append("i.id IN (SELECT invoice_id FROM parties WHERE subject_type='Subject2' AND ident=?)")
            params.append(req.arg("buyerNip"))
        if req.arg("nip"):
            clauses.append("i.id IN (SELECT invoice_id FROM parties WHERE ident=?)")
            params.append(req.arg("nip"))
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        limit = int(req.arg("limit") or 100000)
        sql = "SELECT i.meta, i.session_ref, i.invoice_ref FROM invoices i%s ORDER BY i.id LIMIT ?" % where  # noqa: S608
        rows = self.store.q(sql, (*params, limit))
        out = []
        for meta_text, session_ref, invoice_ref in rows:
            meta = json.loads(meta_text)
            out.append({"ksefNumber": meta["ksefNumber"], "invoiceNumber": meta["invoiceNumber"],
                        "sellerNip": meta["seller"]["nip"], "buyer": meta["buyer"]["identifier"],
                        "invoiceHash": meta["invoiceHash"], "invoiceType": meta["invoiceType"],
                        "invoicingMode": meta["invoicingMode"], "issueDate": meta["issueDate"],
                        "acquisitionDate": meta["acquisitionDate"],
                        "permanentStorageDate": meta["permanentStorageDate"],
                        "sessionReferenceNumber": session_ref, "invoiceReferenceNumber": invoice_ref})
        return {"count": len(out), "invoices": out}
