"""Sending invoices: online and batch sessions, invoice processing, statuses, UPO."""
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import time
import zipfile

from .. import crypto
from ..errors import SchemaUnavailableError
from ..numbers import generate_ksef_number, is_valid_nip
from . import extract, upo
from .http import Fail, Response
from .util import from_db, iso, now, parse_iso, reference_number, to_warsaw

_logger = logging.getLogger(__name__)

# (systemCode, schemaVersion, value) -> form key of ksef.schemas
FORMS = {
    ("FA (3)", "1-0E", "FA"): "FA3",
    ("FA (2)", "1-0E", "FA"): "FA2",
    ("FA_RR (1)", "1-1E", "FA_RR"): "FA_RR",
}
MAX_INVOICES = 10000
MAX_INVOICE = 1024 * 1024
MAX_INVOICE_ATTACHMENT = 3 * 1024 * 1024
MAX_PARTS = 50
MAX_PART_SIZE = 100 * 1024 * 1024

INVOICE_STATUS = {
    100: "Faktura przyjęta do dalszego przetwarzania",
    150: "Trwa przetwarzanie",
    200: "Sukces",
    405: "Przetwarzanie anulowane z powodu błędu sesji",
    410: "Nieprawidłowy zakres uprawnień",
    415: "Brak możliwości wysyłania faktury z załącznikiem",
    430: "Błąd weryfikacji pliku faktury",
    435: "Błąd odszyfrowania pliku",
    440: "Duplikat faktury",
    450: "Błąd weryfikacji semantyki dokumentu faktury",
    500: "Nieznany błąd",
}
ONLINE_STATUS = {
    100: "Sesja interaktywna otwarta",
    170: "Sesja interaktywna zamknięta",
    200: "Sesja interaktywna przetworzona pomyślnie",
    415: "Błąd odszyfrowania dostarczonego klucza",
    440: "Sesja anulowana",
    445: "Błąd weryfikacji, brak poprawnych faktur",
}
BATCH_STATUS = {
    100: "Sesja wsadowa rozpoczęta",
    150: "Trwa przetwarzanie",
    200: "Sesja wsadowa przetworzona pomyślnie",
    405: "Błąd weryfikacji poprawności dostarczonych elementów paczki",
    415: "Błąd odszyfrowania dostarczonego klucza",
    420: "Przekroczony limit faktur w sesji",
    430: "Błąd dekompresji pierwotnego archiwum",
    435: "Błąd odszyfrowania zaszyfrowanych części archiwum",
    440: "Sesja anulowana",
    445: "Błąd weryfikacji, brak poprawnych faktur",
    500: "Nieznany błąd",
}
_ENCODING_RE = re.compile(rb"^<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_HASH_RE = re.compile(r"^[A-Za-z0-9+/]{43}=$")


def _status(table, code, details=None):
    out = {"code": code, "description": table.get(code, "Nieznany błąd (%s)" % code)}
    if details:
        out["details"] = list(details)
    return out


def _ctx_key(context):
    return "%s:%s" % (context["type"], context["value"])


def _ctx_nip(context):
    if context["type"] in ("Nip", "InternalId", "NipVatUe"):
        return context["value"][:10]
    return None


class InvoiceRejected(Exception):
    def __init__(self, code, details=None, extensions=None):
        super().__init__(code)
        self.code = code
        self.details = details or []
        self.extensions = extensions


class InvoicingMixin:
    # ------------------------------------------------------------------------------------
    # opening sessions
    # ------------------------------------------------------------------------------------
    def _form_code(self, body, batch=False):
        form = body.get("formCode")
        if not isinstance(form, dict) or not all(isinstance(form.get(k), str)
                                                 for k in ("systemCode", "schemaVersion", "value")):
            raise Fail(400, 21405, details=["Pole 'formCode' (systemCode, schemaVersion, value) jest wymagane."])
        key = (form["systemCode"], form["schemaVersion"], form["value"])
        form_key = FORMS.get(key)
        if form_key is None or (form_key == "FA2" and self.config.prd_like):
            raise Fail(400, 21405, details=["Wskazany kod formularza nie jest wspierany."])
        return {"systemCode": key[0], "schemaVersion": key[1], "value": key[2]}, form_key

    def _unwrap_key(self, body):
        enc = body.get("encryption")
        if not isinstance(enc, dict):
            raise Fail(400, 21405, details=["Pole 'encryption' jest wymagane."])
        for name in ("encryptedSymmetricKey", "initializationVector"):
            if not isinstance(enc.get(name), str) or not enc[name]:
                raise Fail(400, 21405, details=["Pole 'encryption.%s' jest wymagane." % name])
        try:
            wrapped = crypto.b64decode(enc["encryptedSymmetricKey"])
            iv = crypto.b64decode(enc["initializationVector"])
        except (ValueError, TypeError):
            raise Fail(400, 21405, details=["Pola szyfrowania muszą być poprawnym Base64."]) from None
        if len(iv) != 16:
            raise Fail(400, 21405, details=["Wektor inicjalizujący musi mieć 16 bajtów."])
        pair = self.key_for("SymmetricKeyEncryption", enc.get("publicKeyId"))
        try:
            key = crypto.rsa_oaep_decrypt(pair.key, wrapped)
            if len(key) != 32:
                raise ValueError("bad key length")
        except ValueError:
            return None, iv
        return key, iv

    def _new_session(self, kind, ctx, form, form_key, key, iv, extra):  # noqa: PLR0917
        moment = now()
        ref = reference_number("SO" if kind == "Online" else "SB", moment)
        table = ONLINE_STATUS if kind == "Online" else BATCH_STATUS
        doc = {
            "referenceNumber": ref, "kind": kind, "context": ctx["ctx"], "subject": ctx.get("sub"),
            "authRef": ctx.get("ref"), "tokenRef": None, "authDocHash": None, "formCode": form, "formKey": form_key,
            "key": key.hex() if key else None, "iv": iv.hex(), "keyError": key is None,
            "dateCreated": iso(moment), "dateUpdated": iso(moment), "closedAt": None, "nextOrdinal": 1,
            "status": _status(table, 415 if key is None else 100), "upoPages": [],
        }
        auth = self.store.doc("auth_ops", ctx.get("ref")) if ctx.get("ref") else None
        if auth:
            doc["tokenRef"] = auth.get("tokenRef")
            doc["authDocHash"] = auth.get("authDocHash") or crypto.sha256_b64(ctx["ref"].encode())
        doc.update(extra)
        with self.store.tx() as c:
            c.execute("INSERT INTO sessions (ref, kind, context, created, doc) VALUES (?, ?, ?, ?, ?)",
                      (ref, kind, _ctx_key(ctx["ctx"]), doc["dateCreated"], json.dumps(doc)))
        return doc

    def h_online_open(self, req, ctx):
        body = req.json()
        form, form_key = self._form_code(body)
        key, iv = self._unwrap_key(body)
        valid_until = now() + datetime.timedelta(seconds=self.config.session_ttl)
        doc = self._new_session("Online", ctx, form, form_key, key, iv, {"validUntil": iso(valid_until)})
        return Response.json({"referenceNumber": doc["referenceNumber"], "validUntil": doc["validUntil"]},
                              status=201)

    def _session(self, ctx, ref, kind=None):
        doc = self.store.doc("sessions", ref)
        if doc is None or doc["context"] != ctx["ctx"] or (kind and doc["kind"] != kind):
            raise Fail(400, 21173, details=[
                "Sesja o numerze referencyjnym %s nie została znaleziona." % ref])
        return self._settle_session(doc)

    def _save_session(self, doc):
        self.store.put_doc("sessions", doc["referenceNumber"], doc, kind=doc["kind"],
                           context=_ctx_key(doc["context"]), created=doc["dateCreated"])

    # ------------------------------------------------------------------------------------
    # online: send / close
    # ------------------------------------------------------------------------------------
    def h_online_send(self, req, ctx, ref):
        body = req.json()
        session = self._session(ctx, ref, "Online")
        if session["status"]["code"] != 100:
            raise Fail(400, 21180, details=["Status sesji %s uniemożliwia wysyłkę faktur."
                                            % session["status"]["code"]])
        for name in ("invoiceHash", "encryptedInvoiceHash"):
            if not isinstance(body.get(name), str) or not _HASH_RE.match(body[name]):
                raise Fail(400, 21405, details=["Pole '%s' musi być skrótem SHA-256 w Base64 (44 znaki)." % name])
        for name in ("invoiceSize", "encryptedInvoiceSize"):
            if not isinstance(body.get(name), int) or isinstance(body.get(name), bool) or body[name] < 1:
                raise Fail(400, 21405, details=["Pole '%s' musi być dodatnią liczbą całkowitą." % name])
        if not isinstance(body.get("encryptedInvoiceContent"), str) or not body["encryptedInvoiceContent"]:
            raise Fail(400, 21405, details=["Pole 'encryptedInvoiceContent' jest wymagane."])
        offline = body.get("offlineMode", False)
        if offline is None:
            offline = False
        if not isinstance(offline, bool):
            raise Fail(400, 21405, details=["Pole 'offlineMode' musi być wartością logiczną."])
        hoc = body.get("hashOfCorrectedInvoice")
        if hoc is not None and (not isinstance(hoc, str) or not _HASH_RE.match(hoc)):
            raise Fail(400, 21405, details=["Pole 'hashOfCorrectedInvoice' musi być skrótem SHA-256 w Base64."])
        try:
            encrypted = crypto.b64decode(body["encryptedInvoiceContent"])
        except (ValueError, TypeError):
            raise Fail(400, 21405, details=["encryptedInvoiceContent nie jest poprawnym Base64."]) from None
        if len(encrypted) != body["encryptedInvoiceSize"]:
            raise Fail(400, 21402, details=["Długość treści nie zgadza się z rozmiarem pliku."])
        if crypto.sha256_b64(encrypted) != body["encryptedInvoiceHash"]:
            raise Fail(400, 21403, details=["Skrót treści nie zgadza się ze skrótem pliku."])
        plain = None
        try:
            plain = crypto.aes_cbc_decrypt(bytes.fromhex(session["key"]), bytes.fromhex(session["iv"]), encrypted)
        except ValueError:
            plain = None
        if plain is not None:
            if len(plain) != body["invoiceSize"]:
                raise Fail(400, 21402, details=["Długość treści nie zgadza się z rozmiarem pliku."])
            if crypto.sha256_b64(plain) != body["invoiceHash"]:
                raise Fail(400, 21403, details=["Skrót treści nie zgadza się ze skrótem pliku."])
        if hoc is not None:
            self._check_technical_correction(hoc)
        received = now()
        with self.store.tx() as c:
            session = self._session(ctx, ref, "Online")
            if session["status"]["code"] != 100:
                raise Fail(400, 21180, details=["Status sesji %s uniemożliwia wysyłkę faktur."
                                                % session["status"]["code"]])
            count = c.execute("SELECT COUNT(*) FROM session_invoices WHERE session_ref=?", (ref,)).fetchone()[0]
            if count >= MAX_INVOICES:
                raise Fail(400, 21155, details=[
                    "Sesja o numerze referencyjnym %s osiągnęła dozwolony limit liczby faktur %d."
                    % (ref, MAX_INVOICES)])
            ordinal = session["nextOrdinal"]
            session["nextOrdinal"] += 1
            session["dateUpdated"] = iso(received)
            self._save_session(session)
            inv_ref = reference_number("EE", received)
            ready_at = time.time() + self.config.invoice_delay
            acquisition = received + datetime.timedelta(seconds=self.config.invoice_delay)
            if plain is None:
                result = InvoiceRejected(435, ["Nie udało się odszyfrować pliku faktury."])
            else:
                result = self._process(c, session, plain, offline=offline, invoicing=received,
                                       acquisition=acquisition, hash_of_corrected=hoc, online=True,
                                       invoice_ref=inv_ref)
            self._record(c, session, ordinal, inv_ref, body["invoiceHash"], received, ready_at, result)
        return Response.json({"referenceNumber": inv_ref}, status=202)

    def _check_technical_correction(self, hoc):
        row = self.store.q1("SELECT ksef_number FROM invoices WHERE invoice_hash=?", (hoc,))
        if row:
            raise Fail(400, 21167, details=[
                "Nie można wysłać korekty technicznej do prawidłowo przetworzonej faktury."])
        row = self.store.q1("SELECT ksef_number FROM invoices WHERE hash_of_corrected=?", (hoc,))
        if row:
            raise Fail(400, 21166, details=["Faktura posiada już przetworzoną prawidłowo korektę techniczną."])

    def h_online_close(self, req, ctx, ref):
        with self.store.tx():
            session = self._session(ctx, ref, "Online")
            if session["status"]["code"] != 100:
                raise Fail(400, 21180, details=["Status sesji %s uniemożliwia jej zamknięcie."
                                                % session["status"]["code"]])
            session["status"] = _status(ONLINE_STATUS, 170)
            session["closedAt"] = time.time()
            session["dateUpdated"] = iso(now())
            self._save_session(session)
        return Response.empty()

    # ------------------------------------------------------------------------------------
    # processing one invoice (online and batch)
    # ------------------------------------------------------------------------------------
    def _validate_xsd(self, root, form_key):
        if not self.config.validate_xsd:
            return []
        try:
            from .. import schemas
            return schemas.validate_xsd(root, form_key)
        except SchemaUnavailableError:
            if not getattr(self, "_warned_xsd", False):
                _logger.warning("official XSDs unavailable: the sandbox accepts invoices without XSD validation")
                self._warned_xsd = True
            return []

    def _may_issue(self, context, meta, form_key):
        ctx_nip = _ctx_nip(context)
        if ctx_nip is None:
            return False
        if ctx_nip == meta["seller_nip"]:
            return True
        if form_key == "FA_RR" and meta["buyer_type"] == "Nip" and meta["buyer_value"] == ctx_nip:
            return True
        if meta["self_billing"] and meta["buyer_type"] == "Nip" and meta["buyer_value"] == ctx_nip:
            if self.config.self_billing_without_grant:
                return True
            row = self.store.q1("SELECT 1 FROM grants WHERE context=? AND subject=? AND permission='SelfInvoicing'",
                                (meta["seller_nip"], ctx_nip))
            return row is not None
        auth = meta.get("authorized")
        return bool(auth and auth["nip"] == ctx_nip)

    def _attachments_allowed(self, nip):
        if self.config.allow_attachments:
            return True
        return self.store.q1("SELECT 1 FROM grants WHERE context=? AND subject=? AND permission='Attachment'",
                             (nip, nip)) is not None

    def _process(self, conn, session, xml, *, offline, invoicing, acquisition, hash_of_corrected=None,
                 online=True, invoice_ref=None):
        """Validate and store one invoice. Returns the accepted invoice metadata or an InvoiceRejected."""
        try:
            meta, _root = self._check_invoice(session, xml, online=online, hash_of_corrected=hash_of_corrected,
                                             invoicing=invoicing)
        except InvoiceRejected as exc:
            return exc
        dup = conn.execute("SELECT ksef_number, session_ref FROM invoices WHERE seller_nip=? AND kind=? "
                           "AND invoice_number=? LIMIT 1",
                           (meta["seller_nip"], meta["kind"], meta["invoice_number"])).fetchone()
        if dup:
            return InvoiceRejected(440, [
                "Duplikat faktury. Faktura o numerze KSeF: %s została już prawidłowo przesłana do systemu w sesji: %s"
                % (dup[0], dup[1])], {"originalSessionReferenceNumber": dup[1], "originalKsefNumber": dup[0]})
        invoice_hash = crypto.sha256_b64(xml)
        issue = datetime.date.fromisoformat(meta["issue_date"])
        offline_mode = bool(offline) or issue < to_warsaw(invoicing).date()
        for _attempt in range(5):
            ksef_number = generate_ksef_number(meta["seller_nip"], to_warsaw(acquisition).date())
            if not conn.execute("SELECT 1 FROM invoices WHERE ksef_number=?", (ksef_number,)).fetchone():
                break
        storage = acquisition + datetime.timedelta(seconds=self.config.storage_delay)
        code = session["formCode"]
        if meta["form_code"] and meta["form_code"][0]:
            code = {"systemCode": meta["form_code"][0], "schemaVersion": meta["form_code"][1],
                    "value": meta["form_code"][2]}
        buyer_identifier = {"type": meta["buyer_type"]}
        if meta["buyer_value"]:
            buyer_identifier["value"] = meta["buyer_value"]
        metadata = {
            "ksefNumber": ksef_number, "invoiceNumber": meta["invoice_number"], "issueDate": meta["issue_date"],
            "invoicingDate": iso(invoicing), "acquisitionDate": iso(acquisition),
            "permanentStorageDate": iso(storage),
            "seller": _drop_none({"nip": meta["seller_nip"], "name": meta["seller_name"]}),
            "buyer": _drop_none({"identifier": buyer_identifier, "name": meta["buyer_name"]}),
            "netAmount": meta["net"], "grossAmount": meta["gross"], "vatAmount": meta["vat"],
            "currency": meta["currency"], "invoicingMode": "Offline" if offline_mode else "Online",
            "invoiceType": meta["invoice_type"], "formCode": code, "isSelfInvoicing": meta["self_billing"],
            "hasAttachment": meta["has_attachment"], "invoiceHash": invoice_hash,
            "thirdSubjects": [_drop_none(t) for t in meta["third_subjects"]],
        }
        if hash_of_corrected:
            metadata["hashOfCorrectedInvoice"] = hash_of_corrected
        if meta["authorized"]:
            metadata["authorizedSubject"] = _drop_none(meta["authorized"])
        extra = {"sessionRef": session["referenceNumber"], "invoiceRef": invoice_ref,
                 "context": session["context"], "tokenRef": session.get("tokenRef"),
                 "authDocHash": session.get("authDocHash")}
        cur = conn.execute(
            "INSERT INTO invoices (ksef_number, seller_nip, kind, invoice_number, invoice_hash, issue_date, "
            "invoicing_date, permanent_storage_date, session_ref, invoice_ref, hash_of_corrected, meta, extra) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ksef_number, meta["seller_nip"], meta["kind"], meta["invoice_number"], invoice_hash,
             meta["issue_date"], metadata["invoicingDate"], metadata["permanentStorageDate"],
             session["referenceNumber"], invoice_ref, hash_of_corrected,
             json.dumps(metadata, ensure_ascii=False), json.dumps(extra)))
        invoice_id = cur.lastrowid
        conn.execute("INSERT INTO invoice_xml (id, xml) VALUES (?, ?)", (invoice_id, xml))
        parties = [("Subject1", meta["seller_nip"])]
        if meta["buyer_type"] == "Nip" and meta["buyer_value"]:
            parties.append(("Subject2", meta["buyer_value"]))
        for third in meta["third_subjects"]:
            ident = third["identifier"]
            if ident["type"] in ("Nip", "InternalId") and ident.get("value"):
                parties.append(("Subject3", ident["value"]))
                if ident["type"] == "InternalId":
                    parties.append(("Subject3", ident["value"][:10]))
        if meta["authorized"]:
            parties.append(("SubjectAuthorized", meta["authorized"]["nip"]))
        conn.executemany("INSERT INTO parties (invoice_id, subject_type, ident) VALUES (?, ?, ?)",
                         [(invoice_id, s, i) for s, i in dict.fromkeys(parties)])
        return metadata

    def _check_invoice(self, session, xml, *, online, hash_of_corrected, invoicing):
        if len(xml) > MAX_INVOICE_ATTACHMENT:
            raise InvoiceRejected(430, ["Rozmiar faktury przekracza dozwolony limit."])
        if xml.startswith(b"\xef\xbb\xbf"):
            raise InvoiceRejected(430, ["Plik faktury nie może zawierać znacznika BOM (wymagane UTF-8 bez BOM)."])
        match = _ENCODING_RE.match(xml[:200])
        if match and match.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
            raise InvoiceRejected(430, ["Deklarowane kodowanie %s jest niedozwolone (wymagane UTF-8)."
                                        % match.group(1).decode("ascii", "replace")])
        try:
            xml.decode("utf-8")
        except UnicodeDecodeError:
            raise InvoiceRejected(430, ["Plik faktury nie jest poprawnie zakodowany w UTF-8."]) from None
        try:
            root = extract.parse(xml)
        except extract.ExtractError as exc:
            raise InvoiceRejected(430, [str(exc)[:300]]) from None
        code = extract.form_code(root)
        expected = session["formCode"]
        if code is None or (code[0], code[1], code[2]) != (expected["systemCode"], expected["schemaVersion"],
                                                           expected["value"]):
            raise InvoiceRejected(430, ["Kod formularza faktury %s nie jest zgodny z kodem formularza sesji %s (%s)."
                                        % (code[0] if code else None, expected["systemCode"],
                                           expected["schemaVersion"])])
        issues = self._validate_xsd(root, session["formKey"])
        if issues:
            raise InvoiceRejected(430, [str(i)[:500] for i in issues[:20]])
        try:
            meta = extract.extract(root)
        except extract.ExtractError as exc:
            raise InvoiceRejected(430, [str(exc)]) from None
        if len(xml) > MAX_INVOICE and not meta["has_attachment"]:
            raise InvoiceRejected(430, ["Rozmiar faktury bez załącznika przekracza 1 MB."])
        if meta["has_attachment"]:
            if online and not hash_of_corrected:
                raise InvoiceRejected(415, ["Faktury z załącznikiem można przesyłać wyłącznie w sesji wsadowej."])
            if not session.get("seeded") and not self._attachments_allowed(meta["seller_nip"]):
                raise InvoiceRejected(415, ["Podmiot %s nie ma możliwości wysyłania faktur z załącznikiem."
                                            % meta["seller_nip"]])
        if not self._may_issue(session["context"], meta, session["formKey"]):
            raise InvoiceRejected(410, ["Brak uprawnień do wystawienia faktury w imieniu podmiotu %s w kontekście %s."
                                        % (meta["seller_nip"], session["context"]["value"])])
        try:
            issue = datetime.date.fromisoformat(meta["issue_date"])
        except ValueError:
            raise InvoiceRejected(430, ["Nieprawidłowa data wystawienia %s." % meta["issue_date"]]) from None
        if issue > to_warsaw(invoicing).date():
            raise InvoiceRejected(450, ["Data wystawienia faktury (%s) jest późniejsza niż data przyjęcia faktury "
                                        "do systemu KSeF (%s)." % (issue, to_warsaw(invoicing).date())])
        if self.config.prd_like:
            nips = [("Podmiot1", meta["seller_nip"])]
            if meta["buyer_type"] == "Nip":
                nips.append(("Podmiot2", meta["buyer_value"]))
            for third in meta["third_subjects"]:
                if third["identifier"]["type"] in ("Nip", "InternalId"):
                    nips.append(("Podmiot3", third["identifier"]["value"][:10]))
            if meta["authorized"]:
                nips.append(("PodmiotUpowazniony", meta["authorized"]["nip"]))
            bad = ["%s: nieprawidłowy NIP %s" % (where, nip) for where, nip in nips if not is_valid_nip(nip)]
            if bad:
                raise InvoiceRejected(450, bad)
        return meta, root

    def _record(self, conn, session, ordinal, inv_ref, invoice_hash, invoicing, ready_at, result,  # noqa: PLR0917
                file_name=None):
        doc = {"ordinalNumber": ordinal, "referenceNumber": inv_ref, "invoiceHash": invoice_hash,
               "invoicingDate": iso(invoicing), "readyAt": ready_at}
        if file_name is not None:
            doc["invoiceFileName"] = file_name[:128]
        if isinstance(result, InvoiceRejected):
            doc["status"] = _status(INVOICE_STATUS, result.code, result.details)
            if result.extensions:
                doc["status"]["extensions"] = result.extensions
            failed, accepted = 1, 0
        else:
            doc["status"] = _status(INVOICE_STATUS, 200)
            doc["ksefNumber"] = result["ksefNumber"]
            doc["invoiceNumber"] = result["invoiceNumber"]
            doc["acquisitionDate"] = result["acquisitionDate"]
            doc["permanentStorageDate"] = result["permanentStorageDate"]
            doc["invoicingMode"] = result["invoicingMode"]
            failed, accepted = 0, 1
        conn.execute("INSERT INTO session_invoices (ref, session_ref, ordinal, failed, invoice_hash, ready_at, "
                     "accepted, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (inv_ref, session["referenceNumber"], ordinal, failed, invoice_hash, ready_at, accepted,
                      json.dumps(doc, ensure_ascii=False)))
        return doc

    # ------------------------------------------------------------------------------------
    # session status, lists
    # ------------------------------------------------------------------------------------
    def _counts(self, ref):
        t = time.time()
        row = self.store.q1("SELECT COUNT(*), COALESCE(SUM(accepted=1 AND ready_at<=?), 0), "
                            "COALESCE(SUM(failed=1 AND ready_at<=?), 0), COALESCE(MAX(ready_at), 0) "
                            "FROM session_invoices WHERE session_ref=?", (t, t, ref))
        return row[0], row[1], row[2], row[3]

    def _settle_session(self, doc):
        """Advance time-driven state (expiry, close delay) and finalise; persists changes."""
        code = doc["status"]["code"]
        if doc["kind"] == "Online":
            if code == 100 and parse_iso(doc["validUntil"]) <= now():
                doc["status"] = _status(ONLINE_STATUS, 170)
                doc["closedAt"] = parse_iso(doc["validUntil"]).timestamp()
                self._save_session(doc)
                code = 170
            if code == 170 and time.time() >= doc["closedAt"] + self.config.session_close_delay:
                total, ok, _failed, last_ready = self._counts(doc["referenceNumber"])
                if time.time() >= last_ready:
                    with self.store.tx():
                        fresh = self.store.doc("sessions", doc["referenceNumber"])
                        if fresh["status"]["code"] != 170:
                            return fresh
                        doc = fresh
                        if total == 0:
                            doc["status"] = _status(ONLINE_STATUS, 440, ["Nie przesłano faktur"])
                        elif ok == 0:
                            doc["status"] = _status(ONLINE_STATUS, 445)
                        else:
                            doc["upoPages"] = self._make_session_upo(doc)
                            doc["status"] = _status(ONLINE_STATUS, 200)
                        doc["dateUpdated"] = iso(now())
                        self._save_session(doc)
        elif code == 100 and doc.get("uploadDeadline") and time.time() > doc["uploadDeadline"]:
            with self.store.tx():
                doc["status"] = _status(BATCH_STATUS, 440, ["Przekroczono czas wysyłki"])
                doc["dateUpdated"] = iso(now())
                self._save_session(doc)
        return doc

    def _make_session_upo(self, session):
        rows = self.store.q("SELECT i.meta FROM session_invoices s JOIN invoices i ON i.invoice_ref = s.ref "
                            "WHERE s.session_ref=? AND s.accepted=1 ORDER BY s.ordinal",
                            (session["referenceNumber"],))
        docs = [self._upo_document(json.loads(r[0])) for r in rows]
        pages = []
        total = len(docs)
        chunks = [docs[i:i + upo.PAGE_SIZE] for i in range(0, total, upo.PAGE_SIZE)] or [[]]
        for number, chunk in enumerate(chunks, 1):
            page_ref = reference_number("EU")
            first = (number - 1) * upo.PAGE_SIZE + 1
            xml = upo.build(session, chunk, page=(number, len(chunks), first, first + len(chunk), total))
            xml = self._maybe_sign_upo(xml)
            self._put_blob("upo:sess:%s:%s" % (session["referenceNumber"], page_ref), xml)
            pages.append(page_ref)
        return pages

    @staticmethod
    def _upo_document(meta):
        return {"sellerNip": meta["seller"]["nip"], "ksefNumber": meta["ksefNumber"],
                "invoiceNumber": meta["invoiceNumber"], "issueDate": meta["issueDate"],
                "invoicingDate": from_db(meta["invoicingDate"]), "acquisitionDate": from_db(meta["acquisitionDate"]),
                "invoiceHash": meta["invoiceHash"], "invoicingMode": meta["invoicingMode"]}

    def _maybe_sign_upo(self, xml):
        if not self.config.sign_upo:
            return xml
        from .. import xades
        return xades.sign(xml, self.keys.upo_key, self.keys.upo_cert)

    def _put_blob(self, key, data):
        with self.store.tx() as c:
            c.execute("INSERT OR REPLACE INTO blobs (key, data, hash) VALUES (?, ?, ?)",
                      (key, data, crypto.sha256_b64(data)))

    def _blob(self, key):
        row = self.store.q1("SELECT data, hash FROM blobs WHERE key=?", (key,))
        return (bytes(row[0]), row[1]) if row else (None, None)

    def _session_view(self, req, doc, listing=False):
        total, ok, failed, _ = self._counts(doc["referenceNumber"])
        out = {"status": doc["status"], "dateCreated": doc["dateCreated"], "dateUpdated": doc["dateUpdated"]}
        if doc.get("validUntil"):
            out["validUntil"] = doc["validUntil"]
        if listing:
            return {"referenceNumber": doc["referenceNumber"], **out, "totalInvoiceCount": total,
                    "successfulInvoiceCount": ok, "failedInvoiceCount": failed}
        if doc.get("upoPages"):
            exp = time.time() + self.config.upo_url_ttl
            out["upo"] = {"pages": [{
                "referenceNumber": page,
                "downloadUrl": self.presign(req, "/storage/upo/%s/page/%s" % (doc["referenceNumber"], page), exp),
                "downloadUrlExpirationDate": iso(_ts(exp))} for page in doc["upoPages"]]}
        out["invoiceCount"] = total
        out["successfulInvoiceCount"] = ok
        out["failedInvoiceCount"] = failed
        return out

    def h_session_status(self, req, ctx, ref):
        doc = self._session(ctx, ref)
        return Response.json(self._session_view(req, doc))

    def h_sessions_list(self, req, ctx):
        from .app import _continuation, _int_arg, _make_continuation
        kind = req.arg("sessionType")
        if kind not in ("Online", "Batch"):
            raise Fail(400, 21405, details=["Parametr 'sessionType' jest wymagany (Online, Batch)."])
        page_size = _int_arg(req, "pageSize", 10, 10, 1000)
        offset = _continuation(req)
        filters = {}
        for name in ("dateCreatedFrom", "dateCreatedTo", "dateClosedFrom", "dateClosedTo", "dateModifiedFrom",
                     "dateModifiedTo"):
            if req.arg(name):
                try:
                    filters[name] = parse_iso(req.arg(name))
                except ValueError:
                    raise Fail(400, 21405, details=["Parametr '%s' nie jest poprawną datą." % name]) from None
        statuses = req.args("statuses")
        bad = [s for s in statuses if s not in ("InProgress", "Succeeded", "Failed", "Cancelled")]
        if bad:
            raise Fail(400, 21405, details=["Nieprawidłowy status: %s." % ", ".join(bad)])
        ref_filter = req.arg("referenceNumber")
        rows = self.store.q("SELECT doc FROM sessions WHERE context=? AND kind=? ORDER BY created DESC",
                            (_ctx_key(ctx["ctx"]), kind))
        see_all = bool(set(ctx.get("perms") or ()) & {"Introspection", "EnforcementOperations"})
        items = []
        for row in rows:
            doc = self._settle_session(json.loads(row[0]))
            if not see_all and doc.get("subject") != ctx.get("sub"):
                continue
            if ref_filter and doc["referenceNumber"] != ref_filter:
                continue
            created = parse_iso(doc["dateCreated"])
            updated = parse_iso(doc["dateUpdated"])
            closed = _ts(doc["closedAt"]) if doc.get("closedAt") else None
            if not _in_range(created, filters.get("dateCreatedFrom"), filters.get("dateCreatedTo")):
                continue
            if not _in_range(updated, filters.get("dateModifiedFrom"), filters.get("dateModifiedTo")):
                continue
            if ("dateClosedFrom" in filters or "dateClosedTo" in filters) and (
                    closed is None
                    or not _in_range(closed, filters.get("dateClosedFrom"), filters.get("dateClosedTo"))):
                continue
            if statuses and _common_status(doc["status"]["code"]) not in statuses:
                continue
            items.append(doc)
        page = items[offset:offset + page_size]
        out = {"sessions": [self._session_view(req, d, listing=True) for d in page]}
        if offset + page_size < len(items):
            out["continuationToken"] = _make_continuation(offset + page_size)
        return Response.json(out)

    def _invoice_view(self, req, session_ref, doc):
        out = {k: doc[k] for k in ("ordinalNumber", "referenceNumber", "invoiceHash", "invoicingDate")}
        if doc.get("invoiceFileName"):
            out["invoiceFileName"] = doc["invoiceFileName"]
        t = time.time()
        if t < doc["readyAt"]:
            started = doc["readyAt"] - self.config.invoice_delay
            code = 150 if t >= started + self.config.invoice_delay / 2 else 100
            out["status"] = _status(INVOICE_STATUS, code)
            return out
        out["status"] = doc["status"]
        if doc["status"]["code"] == 200:
            out["invoiceNumber"] = doc["invoiceNumber"]
            out["ksefNumber"] = doc["ksefNumber"]
            out["acquisitionDate"] = doc["acquisitionDate"]
            if parse_iso(doc["permanentStorageDate"]) <= now():
                out["permanentStorageDate"] = doc["permanentStorageDate"]
            out["invoicingMode"] = doc["invoicingMode"]
            if self._upo_available(doc):
                exp = t + self.config.upo_url_ttl
                out["upoDownloadUrl"] = self.presign(req, "/storage/upo/%s/invoice/%s"
                                                     % (session_ref, doc["ksefNumber"]), exp)
                out["upoDownloadUrlExpirationDate"] = iso(_ts(exp))
        return out

    def _upo_available(self, doc):
        delay = self.faults.slow_upo_seconds()
        return not delay or now() >= parse_iso(doc["acquisitionDate"]) + datetime.timedelta(seconds=delay)

    def _session_invoice(self, session_ref, inv_ref):
        row = self.store.q1("SELECT doc FROM session_invoices WHERE ref=? AND session_ref=?", (inv_ref, session_ref))
        if row is None:
            raise Fail(400, 21405, details=["Faktura o numerze referencyjnym %s nie istnieje w sesji %s."
                                            % (inv_ref, session_ref)])
        return json.loads(row[0])

    def h_invoice_status(self, req, ctx, ref, inv):
        self._session(ctx, ref)
        return Response.json(self._invoice_view(req, ref, self._session_invoice(ref, inv)))

    def _list_invoices(self, req, ctx, ref, failed_only):
        from .app import _continuation, _int_arg, _make_continuation
        self._session(ctx, ref)
        page_size = _int_arg(req, "pageSize", 10, 10, 1000)
        after = _continuation(req)
        t = time.time()
        sql = "SELECT doc FROM session_invoices WHERE session_ref=? AND ordinal>?"
        params = [ref, after]
        if failed_only:
            sql += " AND failed=1 AND ready_at<=?"
            params.append(t)
        rows = self.store.q(sql + " ORDER BY ordinal LIMIT ?", (*params, page_size + 1))
        docs = [json.loads(r[0]) for r in rows]
        out = {"invoices": [self._invoice_view(req, ref, d) for d in docs[:page_size]]}
        if len(docs) > page_size:
            out["continuationToken"] = _make_continuation(docs[page_size - 1]["ordinalNumber"])
        return Response.json(out)

    def h_session_invoices(self, req, ctx, ref):
        return self._list_invoices(req, ctx, ref, False)

    def h_session_invoices_failed(self, req, ctx, ref):
        return self._list_invoices(req, ctx, ref, True)

    # ------------------------------------------------------------------------------------
    # UPO
    # ------------------------------------------------------------------------------------
    def invoice_upo(self, session_ref, ksef_number):
        """UPO bytes and hash for an accepted invoice of a session, or ``(None, None)``."""
        row = self.store.q1("SELECT i.meta, s.doc FROM invoices i JOIN session_invoices s ON s.ref = i.invoice_ref "
                            "WHERE i.ksef_number=? AND i.session_ref=?", (ksef_number, session_ref))
        if row is None:
            return None, None
        sdoc = json.loads(row[1])
        if time.time() < sdoc["readyAt"] or not self._upo_available(sdoc):
            return None, None
        key = "upo:inv:%s" % ksef_number
        data, digest = self._blob(key)
        if data is None:
            session = self.store.doc("sessions", session_ref)
            data = self._maybe_sign_upo(upo.build(session, [self._upo_document(json.loads(row[0]))]))
            self._put_blob(key, data)
            digest = crypto.sha256_b64(data)
        return data, digest

    def _upo_response(self, data, digest):
        return Response(200, data, "application/xml", {"x-ms-meta-hash": digest})

    def h_invoice_upo(self, req, ctx, ref, inv):
        self._session(ctx, ref)
        doc = self._session_invoice(ref, inv)
        data, digest = (None, None)
        if doc.get("ksefNumber"):
            data, digest = self.invoice_upo(ref, doc["ksefNumber"])
        if data is None:
            raise Fail(400, 21178, details=["UPO dla faktury %s w sesji %s nie zostało znalezione." % (inv, ref)])
        return self._upo_response(data, digest)

    def h_invoice_upo_by_ksef(self, req, ctx, ref, ksef):
        self._session(ctx, ref)
        data, digest = self.invoice_upo(ref, ksef)
        if data is None:
            raise Fail(400, 21178, details=["UPO o numerze KSeF %s i numerze referencyjnym sesji %s nie zostało "
                                            "znalezione." % (ksef, ref)])
        return self._upo_response(data, digest)

    def h_session_upo(self, req, ctx, ref, upo):
        doc = self._session(ctx, ref)
        data, digest = (None, None)
        if upo in doc.get("upoPages", ()):
            data, digest = self._blob("upo:sess:%s:%s" % (ref, upo))
        if data is None:
            raise Fail(400, 21178, details=["UPO o numerze referencyjnym %s dla sesji %s nie zostało znalezione."
                                            % (upo, ref)])
        return self._upo_response(data, digest)

    # ------------------------------------------------------------------------------------
    # batch sessions
    # ------------------------------------------------------------------------------------
    def h_batch_open(self, req, ctx):
        body = req.json()
        form, form_key = self._form_code(body, batch=True)
        batch = body.get("batchFile")
        if not isinstance(batch, dict):
            raise Fail(400, 21405, details=["Pole 'batchFile' jest wymagane."])
        size = batch.get("fileSize")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 5_000_000_000:
            raise Fail(400, 21405, details=["batchFile.fileSize musi być liczbą od 1 do 5000000000."])
        if not isinstance(batch.get("fileHash"), str) or not _HASH_RE.match(batch["fileHash"]):
            raise Fail(400, 21405, details=["batchFile.fileHash musi być skrótem SHA-256 w Base64."])
        compression = batch.get("compressionType") or "Zip"
        if compression not in ("Zip", "TarGz"):
            raise Fail(400, 21405, details=["Nieobsługiwany typ kompresji %s." % compression])
        parts = batch.get("fileParts")
        if not isinstance(parts, list) or not parts:
            raise Fail(400, 21405, details=["batchFile.fileParts musi zawierać co najmniej jedną część."])
        if len(parts) > MAX_PARTS:
            raise Fail(400, 21161, details=["Maksymalna liczba części to %d." % MAX_PARTS])
        seen = set()
        clean = []
        for part in parts:
            if not isinstance(part, dict):
                raise Fail(400, 21405, details=["Nieprawidłowy opis części pliku."])
            number, psize, phash = part.get("ordinalNumber"), part.get("fileSize"), part.get("fileHash")
            if not isinstance(number, int) or number < 1 or number in seen:
                raise Fail(400, 21405, details=["Nieprawidłowy lub powtórzony ordinalNumber %r." % (number,)])
            if not isinstance(psize, int) or isinstance(psize, bool) or psize < 1:
                raise Fail(400, 21405, details=["Nieprawidłowy rozmiar części %s." % number])
            if psize > MAX_PART_SIZE + 16:
                raise Fail(400, 21157, details=["Rozmiar części %s przekroczył dozwolony rozmiar 100MB." % number])
            if not isinstance(phash, str) or not _HASH_RE.match(phash):
                raise Fail(400, 21405, details=["Nieprawidłowy skrót części %s." % number])
            seen.add(number)
            clean.append({"ordinalNumber": number, "fileSize": psize, "fileHash": phash, "uploaded": False})
        offline = body.get("offlineMode", False) or False
        if not isinstance(offline, bool):
            raise Fail(400, 21405, details=["Pole 'offlineMode' musi być wartością logiczną."])
        key, iv = self._unwrap_key(body)
        deadline = time.time() + self.config.batch_part_seconds * len(clean)
        extra = {"batch": {"fileSize": size, "fileHash": batch["fileHash"], "compressionType": compression,
                           "parts": sorted(clean, key=lambda p: p["ordinalNumber"])},
                 "offlineMode": offline, "uploadDeadline": deadline}
        doc = self._new_session("Batch", ctx, form, form_key, key, iv, extra)
        exp = deadline
        uploads = [{"ordinalNumber": p["ordinalNumber"], "method": "PUT",
                    "url": self.presign(req, "/storage/batch/%s/%d" % (doc["referenceNumber"], p["ordinalNumber"]),
                                        exp),
                    "headers": {"x-ms-blob-type": "BlockBlob"}} for p in extra["batch"]["parts"]]
        return Response.json({"referenceNumber": doc["referenceNumber"], "partUploadRequests": uploads}, status=201)

    def _batch_dir(self, ref):
        return os.path.join(self.data_dir, "batch", ref)

    def batch_part_upload(self, ref, ordinal, req):
        """PUT of a pre-signed part URL (raw bytes, no token)."""
        session = self.store.doc("sessions", ref)
        if session is None or session["kind"] != "Batch":
            raise Fail(404, detail="Nie znaleziono sesji %s." % ref)
        session = self._settle_session(session)
        if session["status"]["code"] != 100:
            raise Fail(403, detail="Zapis części nie jest już możliwy (status sesji %s)." % session["status"]["code"],
                       reason_code="insufficient-resource-access")
        part = next((p for p in session["batch"]["parts"] if p["ordinalNumber"] == ordinal), None)
        if part is None:
            raise Fail(404, detail="Część %d nie została zadeklarowana." % ordinal)
        directory = self._batch_dir(ref)
        os.makedirs(directory, exist_ok=True)
        target = os.path.join(directory, "%d.bin" % ordinal)
        if req.body_file:
            os.replace(req.body_file, target)
        else:
            with open(target, "wb") as fh:
                fh.write(req.body or b"")

        def mark(doc):
            for p in doc["batch"]["parts"]:
                if p["ordinalNumber"] == ordinal:
                    p["uploaded"] = True
                    p["uploadedSize"] = os.path.getsize(target)
            doc["dateUpdated"] = iso(now())
            return doc
        self.store.update_doc("sessions", ref, mark)
        return Response(201, b"", None)

    def h_batch_close(self, req, ctx, ref):
        with self.store.tx():
            session = self._session(ctx, ref, "Batch")
            code = session["status"]["code"]
            if code == 440 and session.get("uploadDeadline") and time.time() > session["uploadDeadline"]:
                raise Fail(400, 21208, details=["Sesja anulowana, przekroczony czas wysyłki."])
            if code not in (100, 415):
                raise Fail(400, 21180, details=["Status sesji %s uniemożliwia jej zamknięcie." % code])
            for part in session["batch"]["parts"]:
                if not part["uploaded"]:
                    raise Fail(400, 21205, details=["Nie przesłano zadeklarowanej '%d' części pliku."
                                                    % part["ordinalNumber"]])
                if part["uploadedSize"] != part["fileSize"]:
                    raise Fail(400, 21157, details=["Zadeklarowany rozmiar części '%d' nie zgadza się z rzeczywistym."
                                                    % part["ordinalNumber"]])
            session["closedAt"] = time.time()
            session["dateUpdated"] = iso(now())
            if code == 100:
                session["status"] = _status(BATCH_STATUS, 150)
            self._save_session(session)
        if code == 100:
            self.submit(("batch", ref), self.process_batch, ref)
        return Response.empty()

    def process_batch(self, ref):
        session = self.store.doc("sessions", ref)
        if session is None or session["status"]["code"] != 150:
            return
        started = time.time()
        try:
            status, details = self._run_batch(session)
        except Exception:
            _logger.exception("batch session %s failed", ref)
            status, details = 500, ["Nieznany błąd."]
        with self.store.tx():
            session = self.store.doc("sessions", ref)
            if status == 200:
                session["upoPages"] = self._make_session_upo(session)
            session["status"] = _status(BATCH_STATUS, status, details)
            session["dateUpdated"] = iso(now())
            self._save_session(session)
        shutil.rmtree(self._batch_dir(ref), ignore_errors=True)  # parts are no longer needed
        _logger.info("batch session %s processed in %.1f s: status %s", ref, time.time() - started, status)

    def _run_batch(self, session):
        """Verify, decrypt and unpack the parts (streamed through a temporary file), then process each file."""
        ref = session["referenceNumber"]
        batch = session["batch"]
        directory = self._batch_dir(ref)
        key, iv = bytes.fromhex(session["key"]), bytes.fromhex(session["iv"])
        archive_path = os.path.join(directory, "archive.bin")
        whole = hashlib.sha256()
        size = 0
        with open(archive_path, "wb") as out:
            for part in batch["parts"]:
                path = os.path.join(directory, "%d.bin" % part["ordinalNumber"])
                digest = hashlib.sha256()
                with open(path, "rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1024 * 1024), b""):
                        digest.update(chunk)
                if crypto.b64encode(digest.digest()) != part["fileHash"]:
                    return 405, ["Skrót części %d nie zgadza się z zadeklarowanym." % part["ordinalNumber"]]
                if os.path.getsize(path) % 16:
                    return 435, ["Nie udało się odszyfrować części %d." % part["ordinalNumber"]]
                decryptor = crypto.AesCbcStreamDecryptor(key, iv)
                try:
                    with open(path, "rb") as fh:
                        for chunk in iter(lambda fh=fh: fh.read(1024 * 1024), b""):
                            plain = decryptor.update(chunk)
                            whole.update(plain)
                            size += len(plain)
                            out.write(plain)
                    plain = decryptor.finalize()
                except ValueError:
                    return 435, ["Nie udało się odszyfrować części %d." % part["ordinalNumber"]]
                whole.update(plain)
                size += len(plain)
                out.write(plain)
        if size != batch["fileSize"] or crypto.b64encode(whole.digest()) != batch["fileHash"]:
            return 405, ["Rozmiar lub skrót paczki nie zgadza się z zadeklarowanym."]
        try:
            entries = list(_archive_entries(archive_path, batch["compressionType"]))
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, ValueError) as exc:
            return 430, ["Nie udało się rozpakować archiwum: %s" % str(exc)[:200]]
        if not entries:
            return 445, ["Archiwum nie zawiera faktur."]
        if len(entries) > MAX_INVOICES:
            return 420, ["Paczka zawiera %d faktur (limit %d)." % (len(entries), MAX_INVOICES)]
        invoicing = parse_iso(session["dateCreated"])
        ordinal = 1
        ok = 0
        chunk = 200
        for start in range(0, len(entries), chunk):
            with self.store.tx() as c:
                for name, reader in entries[start:start + chunk]:
                    xml = reader()
                    inv_ref = reference_number("EE")
                    acquisition = now()
                    result = self._process(c, session, xml, offline=session.get("offlineMode"),
                                           invoicing=invoicing, acquisition=acquisition, online=False,
                                           invoice_ref=inv_ref)
                    self._record(c, session, ordinal, inv_ref, crypto.sha256_b64(xml), invoicing, 0, result,
                                 file_name=name)
                    ok += not isinstance(result, InvoiceRejected)
                    ordinal += 1
        return (200, None) if ok else (445, None)

    def resume_jobs(self):
        """Restart processing of batch sessions interrupted by a shutdown."""
        for row in self.store.q("SELECT doc FROM sessions WHERE kind='Batch'"):
            doc = json.loads(row[0])
            if doc["status"]["code"] == 150:
                ref = doc["referenceNumber"]
                with self.store.tx() as c:
                    c.execute("DELETE FROM parties WHERE invoice_id IN (SELECT id FROM invoices WHERE session_ref=?)",
                              (ref,))
                    c.execute("DELETE FROM invoice_xml WHERE id IN (SELECT id FROM invoices WHERE session_ref=?)",
                              (ref,))
                    c.execute("DELETE FROM invoices WHERE session_ref=?", (ref,))
                    c.execute("DELETE FROM session_invoices WHERE session_ref=?", (ref,))
                self.submit(("batch", ref), self.process_batch, ref)
        self.resume_exports()


def _archive_entries(path, compression):
    """``[(name, reader)]`` of the files in the archive at ``path`` (directories skipped)."""
    if compression == "TarGz":
        tar = tarfile.open(path, mode="r:gz")
        out = []
        for member in tar.getmembers():
            if member.isfile():
                out.append((member.name, (lambda m=member: tar.extractfile(m).read(MAX_INVOICE_ATTACHMENT + 1))))
        return out
    zf = zipfile.ZipFile(path)
    return [(info.filename, (lambda i=info: _zip_read(zf, i))) for info in zf.infolist() if not info.is_dir()]


def _zip_read(zf, info):
    with zf.open(info) as fh:
        return fh.read(MAX_INVOICE_ATTACHMENT + 1)  # larger files are rejected (430) without inflating them


def _drop_none(d):
    return {k: v for k, v in d.items() if v is not None}


def _ts(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)


def _in_range(value, lo, hi):
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _common_status(code):
    if code in (100, 150, 170):
        return "InProgress"
    if code == 200:
        return "Succeeded"
    if code == 440:
        return "Cancelled"
    return "Failed"


_ = hashlib  # kept for callers importing helpers from here
