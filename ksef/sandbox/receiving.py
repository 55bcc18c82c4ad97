"""Receiving invoices: metadata query, download by KSeF number, asynchronous exports."""
import datetime
import io
import json
import logging
import os
import shutil
import tarfile
import time
import zipfile

from .. import crypto
from .http import Fail, Response
from .util import iso, now, parse_iso, reference_number, to_warsaw

_logger = logging.getLogger(__name__)

SUBJECT_TYPES = ("Subject1", "Subject2", "Subject3", "SubjectAuthorized")
DATE_COLUMNS = {"Issue": "issue_date", "Invoicing": "invoicing_date", "PermanentStorage": "permanent_storage_date"}
META_DATE = {"Issue": "issueDate", "Invoicing": "invoicingDate", "PermanentStorage": "permanentStorageDate"}
INVOICE_TYPES = ("Vat", "Zal", "Kor", "Roz", "Upr", "KorZal", "KorRoz", "VatPef", "VatPefSp", "KorPef", "VatRr",
                 "KorVatRr")
EXPORT_STATUS = {
    100: "Eksport faktur w toku",
    200: "Eksport faktur zakończony sukcesem",
    210: "Eksport faktur wygasł i nie jest już dostępny do pobrania",
    415: "Błąd odszyfrowania dostarczonego klucza",
    420: "Zakres filtrowania wykracza poza dostępny zakres danych",
    500: "Nieznany błąd",
}


def _add_months(moment, months):
    month = moment.month - 1 + months
    year = moment.year + month // 12
    month = month % 12 + 1
    day = min(moment.day, [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30,
                           31, 31, 30, 31, 30, 31][month - 1])
    return moment.replace(year=year, month=month, day=day)


class Filters:
    """Validated InvoiceQueryFilters."""

    def __init__(self, body, hwm):
        if not isinstance(body, dict):
            raise Fail(400, 21405, details=["Filtry muszą być obiektem."])
        self.subject_type = body.get("subjectType")
        if self.subject_type not in SUBJECT_TYPES:
            raise Fail(400, 21405, details=["Pole 'subjectType' jest wymagane (%s)." % ", ".join(SUBJECT_TYPES)])
        rng = body.get("dateRange")
        if not isinstance(rng, dict):
            raise Fail(400, 21405, details=["Pole 'dateRange' jest wymagane."])
        self.date_type = rng.get("dateType")
        if self.date_type not in DATE_COLUMNS:
            raise Fail(400, 21405, details=[
                "dateRange.dateType musi być jednym z: Issue, Invoicing, PermanentStorage."])
        try:
            self.date_from = parse_iso(rng.get("from"))
        except (ValueError, TypeError):
            raise Fail(400, 21405, details=["dateRange.from jest wymagane (ISO-8601)."]) from None
        to = rng.get("to")
        try:
            self.date_to = parse_iso(to) if to else now()
        except (ValueError, TypeError):
            raise Fail(400, 21405, details=["dateRange.to nie jest poprawną datą."]) from None
        if self.date_to < self.date_from:
            raise Fail(400, 21405, details=["dateRange.to jest wcześniejsze niż dateRange.from."])
        if self.date_to > _add_months(self.date_from, 3):
            raise Fail(400, 21405, details=["Maksymalny dozwolony okres dateRange wynosi 3 miesiące."])
        self.restrict = bool(rng.get("restrictToPermanentStorageHwmDate")) and self.date_type == "PermanentStorage"
        self.hwm = hwm if self.date_type == "PermanentStorage" else None
        self.beyond_hwm = self.restrict and self.date_from > hwm
        if self.restrict and self.date_to > hwm:
            self.date_to = hwm
        self.ksef_number = body.get("ksefNumber")
        self.invoice_number = body.get("invoiceNumber")
        self.seller_nip = body.get("sellerNip")
        amount = body.get("amount")
        if amount is not None and (not isinstance(amount, dict)
                                   or amount.get("type") not in ("Brutto", "Netto", "Vat")):
            raise Fail(400, 21405, details=["amount.type musi być jednym z: Brutto, Netto, Vat."])
        self.amount = amount
        buyer = body.get("buyerIdentifier")
        if buyer is not None and (not isinstance(buyer, dict) or buyer.get("type") not in ("Nip", "VatUe", "Other",
                                                                                            "None")):
            raise Fail(400, 21405, details=["buyerIdentifier.type musi być jednym z: Nip, VatUe, Other, None."])
        self.buyer = buyer
        self.currencies = body.get("currencyCodes") or None
        if self.currencies is not None and not isinstance(self.currencies, list):
            raise Fail(400, 21405, details=["currencyCodes musi być listą."])
        self.mode = body.get("invoicingMode")
        if self.mode not in (None, "Online", "Offline"):
            raise Fail(400, 21405, details=["invoicingMode musi być Online albo Offline."])
        self.self_invoicing = body.get("isSelfInvoicing")
        self.form_type = body.get("formType")
        if self.form_type not in (None, "FA", "PEF", "FA_RR"):
            raise Fail(400, 21405, details=["formType musi być jednym z: FA, PEF, FA_RR."])
        self.invoice_types = body.get("invoiceTypes") or None
        if self.invoice_types is not None and (not isinstance(self.invoice_types, list)
                                               or any(t not in INVOICE_TYPES for t in self.invoice_types)):
            raise Fail(400, 21405, details=["Nieprawidłowa wartość invoiceTypes."])
        self.has_attachment = body.get("hasAttachment")

    def bounds(self):
        """SQL bounds for the date column (text comparison)."""
        if self.date_type == "Issue":
            return to_warsaw(self.date_from).date().isoformat(), to_warsaw(self.date_to).date().isoformat()
        return iso(self.date_from), iso(self.date_to)

    def matches(self, meta):
        if self.ksef_number and meta["ksefNumber"] != self.ksef_number:
            return False
        if self.invoice_number and meta["invoiceNumber"] != self.invoice_number:
            return False
        if self.seller_nip and meta["seller"]["nip"] != self.seller_nip:
            return False
        if self.amount:
            value = {"Brutto": meta["grossAmount"], "Netto": meta["netAmount"], "Vat": meta["vatAmount"]}[
                self.amount["type"]]
            if self.amount.get("from") is not None and value < self.amount["from"]:
                return False
            if self.amount.get("to") is not None and value > self.amount["to"]:
                return False
        if self.buyer:
            ident = meta["buyer"]["identifier"]
            if ident["type"] != self.buyer["type"]:
                return False
            if self.buyer.get("value") and ident.get("value") != self.buyer["value"]:
                return False
        if self.currencies and meta["currency"] not in self.currencies:
            return False
        if self.mode and meta["invoicingMode"] != self.mode:
            return False
        if self.self_invoicing is not None and meta["isSelfInvoicing"] != self.self_invoicing:
            return False
        if self.form_type and meta["formCode"]["value"] != self.form_type:
            return False
        if self.invoice_types and meta["invoiceType"] not in self.invoice_types:
            return False
        return self.has_attachment is None or meta["hasAttachment"] == self.has_attachment


class ReceivingMixin:
    def hwm(self):
        return now() - datetime.timedelta(seconds=self.config.hwm_lag)

    def _search(self, ctx, filters, limit, desc=False, with_id=False):
        """Matching invoices (metadata dicts) sorted by the date column; at most ``limit``."""
        ident = ctx["ctx"]["value"]
        if ctx["ctx"]["type"] == "NipVatUe":
            ident = ident[:10]
        column = DATE_COLUMNS[filters.date_type]
        lo, hi = filters.bounds()
        order = "DESC" if desc else "ASC"
        sql = ("SELECT i.id, i.meta FROM parties p JOIN invoices i ON i.id = p.invoice_id "  # noqa: S608
               "WHERE p.subject_type=? AND p.ident=? AND i.%s >= ? AND i.%s <= ? "
               "ORDER BY i.%s %s, i.id %s") % (column, column, column, order, order)
        out = []
        cursor = self.store.conn().execute(sql, (filters.subject_type, ident, lo, hi))
        for row in cursor:
            meta = json.loads(row[1])
            if filters.date_type == "PermanentStorage" and meta["permanentStorageDate"] > iso(now()):
                continue
            if filters.matches(meta):
                out.append((row[0], meta) if with_id else meta)
                if len(out) >= limit:
                    break
        cursor.close()
        return out

    # -- POST /invoices/query/metadata ----------------------------------------------------
    def h_query_metadata(self, req, ctx):
        from .app import _int_arg
        page_size = _int_arg(req, "pageSize", 10, 10, 250)
        page_offset = _int_arg(req, "pageOffset", 0, 0, 2 ** 31 - 1)
        order = req.arg("sortOrder") or "Asc"
        if order not in ("Asc", "Desc"):
            raise Fail(400, 21405, details=["sortOrder musi być Asc albo Desc."])
        filters = Filters(req.json(), self.hwm())
        if filters.beyond_hwm:
            raise Fail(400, 21183, details=["Parametr dateRange.from jest późniejszy niż PermanentStorageHwmDate przy "
                                            "włączonym restrictToPermanentStorageHwmDate."])
        cap = self.config.query_max_records
        matches = self._search(ctx, filters, cap + 1, desc=order == "Desc")
        total = len(matches)
        start = page_offset * page_size
        end = min(start + page_size, cap)
        page = matches[start:end] if start < cap else []
        has_more = total > end
        truncated = total > cap and end >= cap
        out = {"hasMore": has_more, "isTruncated": truncated, "invoices": page}
        if filters.date_type == "PermanentStorage":
            out["permanentStorageHwmDate"] = iso(filters.hwm)
        return Response.json(out)

    # -- GET /invoices/ksef/{ksefNumber} ------------------------------------------------
    def h_invoice_download(self, req, ctx, ksef):
        row = self.store.q1("SELECT i.id, i.meta, x.xml FROM invoices i JOIN invoice_xml x ON x.id = i.id "
                            "WHERE i.ksef_number=?", (ksef,))
        ident = ctx["ctx"]["value"][:10] if ctx["ctx"]["type"] == "NipVatUe" else ctx["ctx"]["value"]
        visible = row is not None and self.store.q1(
            "SELECT 1 FROM parties WHERE invoice_id=? AND ident=?", (row[0], ident)) is not None
        if not visible:
            raise Fail(400, 21164, details=["Faktura o numerze KSeF %s nie została znaleziona." % ksef])
        meta = json.loads(row[1])
        if parse_iso(meta["permanentStorageDate"]) > now():
            raise Fail(400, 21165, details=["Faktura o numerze KSeF %s została przetworzona, ale nie jest jeszcze "
                                            "dostępna do pobrania. Spróbuj ponownie później." % ksef])
        xml = bytes(row[2])
        return Response(200, xml, "application/xml", {"x-ms-meta-hash": meta["invoiceHash"]})

    # -- exports ------------------------------------------------------------------------
    def _export_dir(self, ref):
        return os.path.join(self.data_dir, "exports", ref)

    def h_export_create(self, req, ctx):
        body = req.json()
        filters_body = body.get("filters")
        filters = Filters(filters_body, self.hwm())
        if filters.subject_type == "SubjectAuthorized" and ctx["ctx"]["type"] != "Nip":
            raise Fail(400, 21181, details=["Nie można wyeksportować paczki faktur dla wybranego podmiotu (%s) i "
                                            "zalogowanego identyfikatora kontekstu (%s)."
                                            % (filters.subject_type, ctx["ctx"]["type"])])
        key, iv = self._unwrap_key(body)
        only_metadata = body.get("onlyMetadata", False) or False
        if not isinstance(only_metadata, bool):
            raise Fail(400, 21405, details=["onlyMetadata musi być wartością logiczną."])
        compression = body.get("compressionType") or "Zip"
        if compression not in ("Zip", "TarGz"):
            raise Fail(400, 21405, details=["Nieobsługiwany typ kompresji %s." % compression])
        context = "%s:%s" % (ctx["ctx"]["type"], ctx["ctx"]["value"])
        moment = now()
        ref = reference_number("EH", moment)
        with self.store.tx() as c:
            running = 0
            for row in c.execute("SELECT doc FROM exports WHERE context=?", (context,)):
                doc = json.loads(row[0])
                if doc["status"]["code"] == 100 or time.time() < doc["readyAt"]:
                    running += 1
            if running >= self.config.max_concurrent_exports:
                raise Fail(400, 21182, details=[
                    "Dla uwierzytelnionego podmiotu w bieżącym kontekście osiągnięto maksymalny limit %d "
                    "równoczesnych eksportów faktur. Spróbuj ponownie później." % self.config.max_concurrent_exports])
            doc = {"referenceNumber": ref, "context": ctx["ctx"], "filters": filters_body,
                   "onlyMetadata": only_metadata,
                   "compressionType": compression, "key": key.hex() if key else None, "iv": iv.hex(),
                   "created": iso(moment), "hwm": iso(filters.hwm) if filters.hwm else None,
                   "readyAt": time.time() + self.config.export_delay,
                   "status": {"code": 100, "description": EXPORT_STATUS[100]}}
            c.execute("INSERT INTO exports (ref, context, created, doc) VALUES (?, ?, ?, ?)",
                      (ref, context, doc["created"], json.dumps(doc)))
        self.submit(("export", ref), self.build_export, ref)
        return Response.json({"referenceNumber": ref}, status=201)

    def resume_exports(self):
        for row in self.store.q("SELECT doc FROM exports"):
            doc = json.loads(row[0])
            if doc["status"]["code"] == 100:
                self.submit(("export", doc["referenceNumber"]), self.build_export, doc["referenceNumber"])

    def build_export(self, ref):
        doc = self.store.doc("exports", ref)
        if doc is None or doc["status"]["code"] != 100:
            return
        started = time.time()
        try:
            result = self._build_export(doc)
        except Exception:
            _logger.exception("export %s failed", ref)
            result = {"status": {"code": 500, "description": "Nieznany błąd (500)"}}
        result.setdefault("completedDate", iso(now()))

        def finish(d):
            d.update(result)
            return d
        self.store.update_doc("exports", ref, finish)
        _logger.info("export %s built in %.1f s", ref, time.time() - started)

    def _build_export(self, doc):
        if doc["key"] is None:
            return {"status": {"code": 415, "description": EXPORT_STATUS[415]}}
        hwm = parse_iso(doc["hwm"]) if doc.get("hwm") else self.hwm()
        filters = Filters(doc["filters"], hwm)
        if filters.beyond_hwm:
            return {"status": {"code": 420, "description": EXPORT_STATUS[420], "details": [
                "Parametr dateRange.from jest późniejszy niż PermanentStorageHwmDate przy włączonym "
                "restrictToPermanentStorageHwmDate."]}}
        ctx = {"ctx": doc["context"]}
        cap = self.config.export_max_invoices
        found = self._search(ctx, filters, cap + 1, with_id=True)
        truncated = len(found) > cap
        found = found[:cap]
        buf = io.BytesIO()
        metas = [m for _i, m in found]
        metadata_json = json.dumps({"invoices": metas}, ensure_ascii=False).encode("utf-8")
        if doc["compressionType"] == "TarGz":
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                if not doc["onlyMetadata"]:
                    for name, data in self._export_files(found):
                        _tar_add(tar, name, data)
                _tar_add(tar, "_metadata.json", metadata_json)
            ext = "tar.gz"
        else:
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
                if not doc["onlyMetadata"]:
                    for name, data in self._export_files(found):
                        zf.writestr(name, data)
                zf.writestr("_metadata.json", metadata_json)
            ext = "zip"
        package = buf.getvalue()
        del buf
        directory = self._export_dir(doc["referenceNumber"])
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
        key, iv = bytes.fromhex(doc["key"]), bytes.fromhex(doc["iv"])
        size = self.config.export_part_size
        parts = []
        for number, start in enumerate(range(0, max(len(package), 1), size), 1):
            chunk = package[start:start + size]
            encrypted = crypto.aes_cbc_encrypt(key, iv, chunk)
            name = "%s-%03d.%s.aes" % (doc["referenceNumber"], number, ext)
            with open(os.path.join(directory, "%d.bin" % number), "wb") as fh:
                fh.write(encrypted)
            parts.append({"ordinalNumber": number, "partName": name, "method": "GET", "partSize": len(chunk),
                          "partHash": crypto.sha256_b64(chunk), "encryptedPartSize": len(encrypted),
                          "encryptedPartHash": crypto.sha256_b64(encrypted)})
        pkg = {"invoiceCount": len(found), "size": len(package), "parts": parts, "isTruncated": truncated}
        if truncated and metas:
            last = metas[-1][META_DATE[filters.date_type]]
            pkg[{"Issue": "lastIssueDate", "Invoicing": "lastInvoicingDate",
                 "PermanentStorage": "lastPermanentStorageDate"}[filters.date_type]] = last
        if filters.date_type == "PermanentStorage":
            pkg["permanentStorageHwmDate"] = iso(filters.hwm)
        return {"status": {"code": 200, "description": EXPORT_STATUS[200]}, "package": pkg,
                "packageExpirationDate": iso(now() + datetime.timedelta(days=7))}

    def _export_files(self, found):
        ids = [i for i, _m in found]
        by_id = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            sql = "SELECT id, xml FROM invoice_xml WHERE id IN (%s)" % ",".join("?" * len(chunk))  # noqa: S608
            rows = self.store.q(sql, chunk)
            by_id.update({r[0]: bytes(r[1]) for r in rows})
            for invoice_id, meta in found[start:start + 500]:
                yield "%s.xml" % meta["ksefNumber"], by_id.pop(invoice_id)

    def h_export_status(self, req, ctx, ref):
        doc = self.store.doc("exports", ref)
        if doc is None or doc["context"] != ctx["ctx"]:
            raise Fail(400, 21175, details=["Wynik zapytania o numerze %s nie istnieje." % ref])
        if now() - parse_iso(doc["created"]) > datetime.timedelta(days=7):
            raise Fail(410, detail="Operacja wygasła i nie jest już dostępna.")
        if doc["status"]["code"] == 100 or time.time() < doc["readyAt"]:
            return Response.json({"status": {"code": 100, "description": EXPORT_STATUS[100]}})
        out = {"status": doc["status"]}
        if doc.get("completedDate"):
            out["completedDate"] = doc["completedDate"]
        if doc["status"]["code"] == 200:
            expired = parse_iso(doc["packageExpirationDate"]) < now()
            if expired:
                return Response.json({"status": {"code": 210, "description": EXPORT_STATUS[210]},
                                      "completedDate": doc["completedDate"]})
            out["packageExpirationDate"] = doc["packageExpirationDate"]
            exp = time.time() + self.config.export_url_ttl
            pkg = json.loads(json.dumps(doc["package"]))
            for part in pkg["parts"]:
                part["url"] = self.presign(req, "/storage/export/%s/%d" % (ref, part["ordinalNumber"]), exp)
                part["expirationDate"] = iso(datetime.datetime.fromtimestamp(exp, datetime.timezone.utc))
            out["package"] = pkg
        return Response.json(out)

    def export_part_path(self, ref, number):
        path = os.path.join(self._export_dir(ref), "%d.bin" % number)
        return path if os.path.exists(path) else None


def _tar_add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))
