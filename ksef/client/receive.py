"""Receiving invoices: metadata queries, single downloads, async exports and the incremental sync.

Incremental sync cursor (``IncrementalSync.cursor``; a plain dict the caller persists after each
invoice or at the end of a run)::

    {"version": 1,
     "subjectType": "Subject2",
     "from": "2026-03-01T10:00:00.123Z",     # next window starts here (inclusive)
     "seen": ["<ksef number>", …],            # invoices already delivered whose date == "from"
     "hwm": "2026-03-02T08:00:00Z" | null,    # last permanentStorageHwmDate seen
     "pendingExport": {…} | null,             # InvoiceExport.to_dict() of a started export (has its AES key!)
     "lastRunAt": "…Z" | null}

While the caller handles a yielded invoice the cursor already covers it, so persisting the invoice and
the cursor together gives exactly-once delivery; a crash between the two redelivers (never loses) the
invoice, so the caller should still deduplicate by KSeF number when storing.
"""
import datetime
import hashlib
import json
import logging
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field

from .. import crypto
from ..errors import BadRequestError, GoneError, OperationFailed, TransportError
from . import keys
from .util import add_months, format_datetime, parse_datetime, utcnow

_logger = logging.getLogger(__name__)

SUBJECT_TYPES = ("Subject1", "Subject2", "Subject3", "SubjectAuthorized")
SUBJECT_ALIASES = {"seller": "Subject1", "buyer": "Subject2", "purchase": "Subject2", "sales": "Subject1",
                   "third": "Subject3", "third-party": "Subject3", "authorized": "SubjectAuthorized"}
DATE_TYPES = ("Issue", "Invoicing", "PermanentStorage")
DATE_FIELDS = {"PermanentStorage": "permanentStorageDate", "Invoicing": "invoicingDate", "Issue": "issueDate"}
EXPORT_IN_PROGRESS = (100,)
NO_DATA_CODES = (21183,)   # from later than the HWM with the restriction on


def subject_type(value):
    value = SUBJECT_ALIASES.get(str(value).lower(), value)
    if value not in SUBJECT_TYPES:
        raise ValueError("unknown subject type %r (expected %s or buyer/seller)" % (value, ", ".join(SUBJECT_TYPES)))
    return value


def build_filters(subject="Subject2", date_from=None, date_to=None, *, date_type="PermanentStorage",
                  restrict_to_hwm=None, **extra):
    """``InvoiceQueryFilters``; dates may be str/date/datetime (naive = UTC). ``extra`` is passed as is
    (camelCase API names, e.g. ``sellerNip="…"``, ``invoiceTypes=["Vat"]``)."""
    if date_type not in DATE_TYPES:
        raise ValueError("unknown date type %r" % (date_type,))
    if date_from is None:
        raise ValueError("date_from is required")
    date_range = {"dateType": date_type, "from": _fmt(date_from)}
    if date_to is not None:
        date_range["to"] = _fmt(date_to)
    if restrict_to_hwm is not None:
        date_range["restrictToPermanentStorageHwmDate"] = bool(restrict_to_hwm)
    filters = {"subjectType": subject_type(subject), "dateRange": date_range}
    filters.update({k: v for k, v in extra.items() if v is not None})
    return filters


def _fmt(value):
    return value if isinstance(value, str) and value.endswith(("Z", "z")) else format_datetime(value)


# ------------------------------------------------------------------------------------------------
# metadata queries and single downloads
# ------------------------------------------------------------------------------------------------

def query_invoice_metadata(client, filters, page_offset=0, page_size=250, sort_order="Asc"):
    """One page of ``POST /invoices/query/metadata`` (a read: retried safely)."""
    params = {"pageOffset": page_offset, "pageSize": page_size, "sortOrder": sort_order}
    data = client._api("POST", "/invoices/query/metadata", params=params, json_body=filters, safe=True).data
    if not isinstance(data, dict) or not isinstance(data.get("invoices"), list):
        raise TransportError("invoice metadata answer without an invoice list", code="malformed_response")
    return data


def iter_invoice_metadata(client, filters, *, page_size=250, state=None):
    """Iterate every ``InvoiceMetadata`` matching ``filters`` in ascending date order.

    Follows ``hasMore`` with ``pageOffset`` and, when ``isTruncated`` (10 000 records per filter set),
    restarts with ``from`` = the last record's date, skipping the records already returned at that date.
    ``state`` (optional dict) receives ``permanentStorageHwmDate``, ``pages`` and ``restarts``.
    """
    filters = json.loads(json.dumps(filters))
    date_field = DATE_FIELDS[filters["dateRange"]["dateType"]]
    state = state if state is not None else {}
    state.setdefault("pages", 0)
    state.setdefault("restarts", 0)
    boundary_date, boundary = None, set()
    offset = 0
    while True:
        page = query_invoice_metadata(client, filters, offset, page_size, "Asc")
        state["pages"] += 1
        if page.get("permanentStorageHwmDate"):
            state["permanentStorageHwmDate"] = page["permanentStorageHwmDate"]
        last_raw = None
        for item in page["invoices"]:
            raw = item.get(date_field)
            when = parse_datetime(raw) if raw else None
            if boundary_date is not None and when is not None and when <= boundary_date and \
                    item.get("ksefNumber") in boundary:
                continue
            if when is not None:
                if boundary_date is None or when > boundary_date:
                    boundary_date, boundary = when, set()
                boundary.add(item.get("ksefNumber"))
                last_raw = raw
            yield item
        if not page.get("hasMore"):
            return
        if page.get("isTruncated"):
            if last_raw is None:
                raise TransportError("truncated metadata page without dates: cannot continue",
                                     code="malformed_response")
            filters["dateRange"]["from"] = last_raw
            offset = 0
            state["restarts"] += 1
        else:
            offset += 1


def download_invoice(client, ksef_number):
    """``GET /invoices/ksef/{ksefNumber}`` → the invoice XML bytes (hash checked against ``x-ms-meta-hash``)."""
    resp = client._api("GET", "/invoices/ksef/%s" % ksef_number, expect_json=False,
                       headers={"Accept": "application/xml"})
    expected = resp.headers.get("x-ms-meta-hash")
    if expected and crypto.sha256_b64(resp.content) != expected:
        raise TransportError("invoice %s does not match its x-ms-meta-hash" % ksef_number, code="download_corrupt")
    if not resp.content:
        raise TransportError("invoice %s: empty answer" % ksef_number, code="malformed_response")
    return resp.content


# ------------------------------------------------------------------------------------------------
# exports
# ------------------------------------------------------------------------------------------------

@dataclass
class ExportedInvoice:
    """One received invoice: ``ksef_number``, ``xml`` (bytes; ``None`` for metadata-only) and ``metadata``."""

    ksef_number: str
    xml: bytes | None = field(default=None, repr=False)
    metadata: dict | None = field(default=None, repr=False)

    def date(self, date_type="PermanentStorage"):
        raw = (self.metadata or {}).get(DATE_FIELDS[date_type])
        return parse_datetime(raw) if raw else None


class InvoiceExport:
    """An asynchronous export (``POST /invoices/exports``); serialisable with its AES key."""

    def __init__(self, client, reference_number, key, iv, filters, *, only_metadata=False, started_at=None):
        self.client = client
        self.reference_number = reference_number
        self._key, self._iv = key, iv
        self.filters = filters
        self.only_metadata = only_metadata
        self.started_at = started_at or format_datetime(utcnow())
        client.transport.secrets.add(crypto.b64encode(key))

    def __repr__(self):
        return "<InvoiceExport %s key=<redacted>>" % self.reference_number

    @classmethod
    def start(cls, client, filters, only_metadata=False, compression=None):
        key, iv = crypto.new_symmetric_key()

        def op(cert):
            body = {"encryption": client.encryption_info(key, iv, cert), "filters": filters,
                    "onlyMetadata": bool(only_metadata)}
            if compression:
                body["compressionType"] = compression
            # exports are reads without business effect: repeating one after an ambiguous failure is safe
            return client._api("POST", "/invoices/exports", json_body=body, safe=True,
                               required=("referenceNumber",)).data
        data = client.with_public_key(keys.SYMMETRIC_KEY_ENCRYPTION, op)
        _logger.debug("started KSeF export %s", data["referenceNumber"])
        return cls(client, data["referenceNumber"], key, iv, filters, only_metadata=only_metadata)

    def to_dict(self):
        return {"version": 1, "type": "export", "referenceNumber": self.reference_number,
                "symmetricKey": crypto.b64encode(self._key), "initializationVector": crypto.b64encode(self._iv),
                "filters": self.filters, "onlyMetadata": self.only_metadata, "startedAt": self.started_at}

    @classmethod
    def from_dict(cls, client, data):
        return cls(client, data["referenceNumber"], crypto.b64decode(data["symmetricKey"]),
                   crypto.b64decode(data["initializationVector"]), data["filters"],
                   only_metadata=bool(data.get("onlyMetadata")), started_at=data.get("startedAt"))

    def status(self):
        return self.client._api("GET", "/invoices/exports/%s" % self.reference_number, required=("status",)).data

    def wait(self, timeout=900.0):
        """Poll until the package is ready (200); raise :class:`OperationFailed` for 210/415/420/500/550."""
        status = self.client._poll(self.status, lambda s: (s.get("status") or {}).get("code") not in EXPORT_IN_PROGRESS,
                                   timeout=timeout, what="invoice export", reference=self.reference_number)
        info = status.get("status") or {}
        if info.get("code") != 200:
            raise OperationFailed("KSeF export %s ended with status %s %s" % (
                self.reference_number, info.get("code"), info.get("description") or ""),
                status_code=info.get("code"), description=info.get("description"),
                details=list(info.get("details") or ()), reference_number=self.reference_number,
                exception_codes=[info.get("code")])
        if not isinstance(status.get("package"), dict):
            raise TransportError("export %s is ready but has no package" % self.reference_number,
                                 code="malformed_response")
        return status

    def download_archive(self, status, spool_size=16 << 20):
        """Download, verify and decrypt every part; return a spooled file holding the archive."""
        package = status["package"]
        archive = tempfile.SpooledTemporaryFile(max_size=spool_size)
        for part in sorted(package.get("parts") or (), key=lambda p: p["ordinalNumber"]):
            with tempfile.SpooledTemporaryFile(max_size=spool_size) as encrypted:
                self.client.transport.download(part["url"], encrypted, expected_hash=part.get("encryptedPartHash"),
                                               expected_size=part.get("encryptedPartSize"))
                decryptor = crypto.AesCbcStreamDecryptor(self._key, self._iv)
                digest, size = hashlib.sha256(), 0
                try:
                    for chunk in iter(lambda f=encrypted: f.read(1 << 20), b""):
                        plain = decryptor.update(chunk)
                        digest.update(plain)
                        size += len(plain)
                        archive.write(plain)
                    plain = decryptor.finalize()
                except ValueError:
                    raise TransportError("export part %s cannot be decrypted" % part["ordinalNumber"],
                                         code="decrypt_failed") from None
                digest.update(plain)
                size += len(plain)
                archive.write(plain)
            if part.get("partHash") and crypto.b64encode(digest.digest()) != part["partHash"]:
                raise TransportError("export part %s does not match partHash" % part["ordinalNumber"],
                                     code="download_corrupt")
            if part.get("partSize") is not None and size != part["partSize"]:
                raise TransportError("export part %s does not match partSize" % part["ordinalNumber"],
                                     code="download_corrupt")
        archive.seek(0)
        return archive

    def iter_invoices(self, status=None, date_type="PermanentStorage"):
        """Yield :class:`ExportedInvoice` in ascending date order (then KSeF number); memory stays bounded."""
        status = status or self.wait()
        package = status["package"]
        if not package.get("parts"):
            return
        with self.download_archive(status) as archive:
            yield from _iter_archive(archive, date_type)


def _iter_archive(archive, date_type):
    head = archive.read(4)
    archive.seek(0)
    if head[:2] == b"\x1f\x8b":
        yield from _iter_tar(archive, date_type)
        return
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise TransportError("export package is not a zip archive", code="malformed_response") from None
    with zf:
        names = set(zf.namelist())
        metadata = []
        if "_metadata.json" in names:
            try:
                metadata = json.loads(zf.read("_metadata.json").decode("utf-8")).get("invoices") or []
            except (ValueError, UnicodeDecodeError, AttributeError):
                raise TransportError("export _metadata.json is unreadable", code="malformed_response") from None
        date_field = DATE_FIELDS[date_type]
        metadata.sort(key=lambda m: (parse_datetime(m.get(date_field)) if m.get(date_field) else utcnow(),
                                     m.get("ksefNumber") or ""))
        done = set()
        for meta in metadata:
            number = meta.get("ksefNumber")
            name = "%s.xml" % number
            xml = zf.read(name) if name in names else None
            done.add(name)
            yield ExportedInvoice(number, xml, meta)
        for name in sorted(names - done - {"_metadata.json"}):
            if name.endswith(".xml"):
                yield ExportedInvoice(name[:-4], zf.read(name), None)


def _iter_tar(archive, date_type):
    # tar.gz has no random access: collect metadata first (small), then stream files in archive order
    with tarfile.open(fileobj=archive, mode="r:gz") as tf:
        members = {m.name: m for m in tf.getmembers() if m.isfile()}
        metadata = {}
        if "_metadata.json" in members:
            data = json.loads(tf.extractfile(members["_metadata.json"]).read().decode("utf-8"))
            metadata = {m.get("ksefNumber"): m for m in data.get("invoices") or ()}
        date_field = DATE_FIELDS[date_type]
        order = sorted((n for n in members if n.endswith(".xml")),
                       key=lambda n: ((metadata.get(n[:-4]) or {}).get(date_field) or "", n))
        for name in order:
            yield ExportedInvoice(name[:-4], tf.extractfile(members[name]).read(), metadata.get(name[:-4]))


# ------------------------------------------------------------------------------------------------
# incremental sync
# ------------------------------------------------------------------------------------------------

class IncrementalSync:
    """Resumable incremental download on ``PermanentStorage`` dates with ``restrictToPermanentStorageHwmDate``.

    ``cursor``: a dict from a previous run (see the module docstring) or ``None`` with ``start`` (first run;
    may be years back: windows of at most ``window_months`` are walked). ``mode``: ``export`` (async export
    packages — the recommended way) or ``query`` (metadata query + one ``GET`` per invoice; for small
    volumes). ``only_metadata``: skip the XML bodies. :meth:`run` is a generator of :class:`ExportedInvoice`.

    While the caller handles a yielded invoice, ``sync.cursor`` already covers it: store the invoice and the
    cursor together (one transaction) for exactly-once delivery; a crash in between redelivers it (dedupe by
    KSeF number). ``on_cursor(cursor)`` is called when the caller asks for the next invoice (i.e. after it
    handled the previous one), when an export is started and at every window boundary.
    """

    def __init__(self, client, subject="Subject2", cursor=None, *, start=None, mode="export", window_months=3,
                 only_metadata=False, export_timeout=900.0, page_size=250, on_cursor=None):
        if mode not in ("export", "query"):
            raise ValueError("mode must be export or query")
        self.client = client
        self.subject_type = subject_type(subject)
        if cursor:
            if cursor.get("subjectType") not in (None, self.subject_type):
                raise ValueError("the cursor belongs to %s, not %s" % (cursor.get("subjectType"), self.subject_type))
            self.cursor = json.loads(json.dumps(cursor))
            self.cursor["subjectType"] = self.subject_type
        else:
            if start is None:
                raise ValueError("a first sync needs a start date")
            self.cursor = {"version": 1, "subjectType": self.subject_type, "from": format_datetime(start),
                           "seen": [], "hwm": None, "pendingExport": None, "lastRunAt": None}
        self.mode = mode
        self.window_months = window_months
        self.only_metadata = only_metadata
        self.export_timeout = export_timeout
        self.page_size = page_size
        self.on_cursor = on_cursor
        self.stats = {"windows": 0, "exports": 0, "invoices": 0, "skipped": 0, "downloads": 0}

    def _notify(self):
        if self.on_cursor is not None:
            self.on_cursor(self.cursor)

    def _window_filters(self):
        start = parse_datetime(self.cursor["from"])
        end = add_months(start, self.window_months)
        end = end - datetime.timedelta(minutes=1)
        to = format_datetime(end) if end < utcnow() else None
        return build_filters(self.subject_type, self.cursor["from"], to, restrict_to_hwm=True)

    def run(self, max_windows=None):
        """Deliver new invoices window by window until caught up with the HWM (or ``max_windows``)."""
        windows = 0
        while max_windows is None or windows < max_windows:
            pending = self.cursor.get("pendingExport")
            if not pending and parse_datetime(self.cursor["from"]) >= utcnow():
                return                      # nothing can be stored after "now"
            filters = pending["filters"] if pending and self.mode == "export" else self._window_filters()
            try:
                if self.mode == "export":
                    items, info, filters = self._export_window(filters, pending)
                else:
                    items, info = self._query_window(filters)
                caught_up = yield from self._deliver(items, info, filters)
            except _NoNewData:
                self.cursor["pendingExport"] = None
                caught_up = True
            windows += 1
            self.stats["windows"] += 1
            self.cursor["lastRunAt"] = format_datetime(utcnow())
            self._notify()
            if caught_up:
                return

    def _deliver(self, items, info, filters):
        from_dt = parse_datetime(self.cursor["from"])
        seen = set(self.cursor.get("seen") or ())
        for invoice in items:
            when = invoice.date("PermanentStorage")
            if when is not None and (when < from_dt or (when == from_dt and invoice.ksef_number in seen)):
                self.stats["skipped"] += 1
                continue
            # the cursor already covers this invoice while the caller handles it: persist ``sync.cursor``
            # together with the stored invoice (same transaction) for exactly-once delivery
            if when is not None:
                if when > from_dt:
                    from_dt, seen = when, set()
                    self.cursor["from"] = invoice.metadata["permanentStorageDate"]
                seen.add(invoice.ksef_number)
                self.cursor["seen"] = sorted(seen)
            yield invoice
            self.stats["invoices"] += 1
            self._notify()
        # window complete: where does the next one start?
        hwm = info.get("hwm")
        to = filters["dateRange"].get("to")
        if info.get("isTruncated") and info.get("last"):
            nxt, caught_up = info["last"], False
        elif to is not None and (hwm is None or parse_datetime(hwm) >= parse_datetime(to)):
            nxt, caught_up = to, False
        else:
            nxt, caught_up = hwm or self.cursor["from"], True
        nxt_dt = parse_datetime(nxt)
        if nxt_dt > from_dt:
            self.cursor["from"], self.cursor["seen"] = nxt, []
        self.cursor["hwm"] = hwm or self.cursor.get("hwm")
        self.cursor["pendingExport"] = None
        return caught_up

    def _export_window(self, filters, pending):
        export = None
        if pending:
            export = InvoiceExport.from_dict(self.client, pending)
            try:
                status = export.wait(self.export_timeout)
            except (GoneError, OperationFailed) as exc:
                if isinstance(exc, OperationFailed) and exc.status_code == 420:
                    raise _NoNewData() from None
                _logger.info("pending export %s unusable (%s): starting a new one", export.reference_number, exc.code)
                export = None
                filters = self._window_filters()
        if export is None:
            try:
                export = InvoiceExport.start(self.client, filters, only_metadata=self.only_metadata)
            except BadRequestError as exc:
                if set(NO_DATA_CODES) & set(exc.exception_codes):
                    raise _NoNewData() from None
                raise
            self.stats["exports"] += 1
            self.cursor["pendingExport"] = export.to_dict()
            self._notify()
            try:
                status = export.wait(self.export_timeout)
            except OperationFailed as exc:
                if exc.status_code == 420:
                    raise _NoNewData() from None
                raise
        filters = export.filters
        package = status["package"]
        info = {"isTruncated": bool(package.get("isTruncated")), "last": package.get("lastPermanentStorageDate"),
                "hwm": package.get("permanentStorageHwmDate"), "count": package.get("invoiceCount")}
        _logger.info("KSeF export %s: %s invoices%s", export.reference_number, package.get("invoiceCount"),
                     " (truncated)" if info["isTruncated"] else "")
        return export.iter_invoices(status), info, filters

    def _query_window(self, filters):
        state = {}
        info = {"isTruncated": False, "last": None, "hwm": None}

        def items():
            try:
                for meta in iter_invoice_metadata(self.client, filters, page_size=self.page_size, state=state):
                    info["hwm"] = state.get("permanentStorageHwmDate")
                    xml = None
                    if not self.only_metadata:
                        xml = download_invoice(self.client, meta["ksefNumber"])
                        self.stats["downloads"] += 1
                    yield ExportedInvoice(meta["ksefNumber"], xml, meta)
            except BadRequestError as exc:
                if set(NO_DATA_CODES) & set(exc.exception_codes):
                    return
                raise
            info["hwm"] = state.get("permanentStorageHwmDate")

        return _LazyInfo(items(), info), info


class _LazyInfo:
    """Iterator wrapper so ``info`` is complete once iteration ends (query mode learns the HWM lazily)."""

    def __init__(self, iterator, info):
        self._it, self.info = iterator, info

    def __iter__(self):
        return self._it


class _NoNewData(Exception):
    pass


__all__ = ["ExportedInvoice", "IncrementalSync", "InvoiceExport", "build_filters", "download_invoice",
           "iter_invoice_metadata", "query_invoice_metadata", "subject_type"]

